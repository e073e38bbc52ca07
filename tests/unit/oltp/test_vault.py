from __future__ import annotations

import base64
import re

import pytest

from lakehouse.common.config import ConfigError, load_settings
from lakehouse.oltp.pan_scan import contains_pan
from lakehouse.oltp.service import platform_fee
from lakehouse.oltp.vault import (
    CardError,
    VaultKey,
    card_brand,
    load_vault_key,
    luhn_check_digit,
    luhn_valid,
    new_token,
    normalize_pan,
)


@pytest.mark.parametrize(("pan", "ok"), [
    ("4242424242424242", True), ("4242424242424241", False), ("378282246310005", True),
    ("5555555555554444", True), ("6011111111111117", True), ("12345", False), ("4242x42424242424", False),
])
def test_luhn(pan: str, ok: bool) -> None:
    assert luhn_valid(pan) is ok


def test_check_digit_completes_a_valid_number() -> None:
    assert luhn_check_digit("424242424242424") == "2"
    assert luhn_valid("411111111111111" + luhn_check_digit("411111111111111"))


@pytest.mark.parametrize(("pan", "brand"), [("4242424242424242", "visa"), ("5555555555554444", "mastercard"),
                                            ("2223003122003222", "mastercard"), ("378282246310005", "amex"),
                                            ("6011111111111117", "discover"), ("3530111333300000", "jcb"),
                                            ("6200000000000005", "unionpay"), ("9000000000000000", "other")])
def test_brand_from_iin(pan: str, brand: str) -> None:
    assert card_brand(pan) == brand


def test_rejected_pan_is_not_in_the_error() -> None:
    with pytest.raises(CardError) as err:
        normalize_pan("4242 4242 4242 4241")
    assert not re.search(r"\d{4}", str(err.value))
    assert normalize_pan("4242-4242-4242-4242") == "4242424242424242"


def test_encryption_round_trips_and_binds_the_token() -> None:
    key = VaultKey("k", bytes(range(32)))
    blob = key.encrypt("4242424242424242", "tok_a")
    assert b"4242" not in blob
    assert key.decrypt(blob, "tok_a") == "4242424242424242"
    with pytest.raises(Exception):  # noqa: B017 - AES-GCM authentication fails with another token
        key.decrypt(blob, "tok_b")
    assert key.fingerprint("4242424242424242") == key.fingerprint("4242424242424242")
    assert re.fullmatch(r"[a-p]{32}", key.fingerprint("4242424242424242"))   # never a digit run
    assert re.fullmatch(r"tok_[A-Za-z0-9]{24}", new_token())


def test_vault_key_from_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings("test", environ={})
    monkeypatch.setenv("LAKEHOUSE_VAULT_KEY", base64.b64encode(b"x" * 16).decode())
    with pytest.raises(ConfigError, match="must decode to 32 bytes, got 16"):
        load_vault_key(settings)
    monkeypatch.setenv("LAKEHOUSE_VAULT_KEY", base64.b64encode(b"y" * 32).decode())
    assert load_vault_key(settings).data_key == b"y" * 32


@pytest.mark.parametrize(("text", "found"), [("card 4242 4242 4242 4242 used", True), ("4242-4242-4242-4242", True),
                                             ("order 4242424242424241", False), ("phone +4915112345679", False),
                                             ("phone +49 151 1234 5678", True),
                                             ("no digits", False)])
def test_contains_pan(text: str, found: bool) -> None:
    assert contains_pan(text) is found


def test_platform_fee_is_exact_integer_arithmetic() -> None:
    assert platform_fee(10000) == 320        # 290 + 30
    assert platform_fee(2500) == 103         # 72.5 rounds half-up to 73, + 30
    assert platform_fee(1) == 30
