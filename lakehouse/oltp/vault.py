"""Card tokenization: the PAN goes into `vault.card_pans` encrypted, and nowhere else.

The data key comes from `$LAKEHOUSE_VAULT_KEY` (base64 of 32 bytes) or, on the local stack, a
generated file under `<state_dir>/secrets/` (0600). It never reaches the database: PostgreSQL holds
only AES-256-GCM ciphertext. The card fingerprint is a keyed hash (HMAC-SHA256 with a key derived
from the data key), so the same card gives the same fingerprint without revealing the number.

Nothing in this module logs, prints or puts a PAN into an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lakehouse.common.config import ConfigError, Settings
from lakehouse.common.connections import secrets_dir

KEY_ENV = "LAKEHOUSE_VAULT_KEY"
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class CardError(ValueError):
    """A card number was rejected; the message never contains the number."""


def luhn_valid(pan: str) -> bool:
    """True for 12-19 digits that pass the Luhn checksum."""
    if not (pan.isdigit() and 12 <= len(pan) <= 19):
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial + digit` Luhn-valid (used by the simulator to make test cards)."""
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def card_brand(pan: str) -> str:
    """The network from the leading digits (IIN ranges)."""
    two, four = int(pan[:2]), int(pan[:4])
    if pan[0] == "4":
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if pan.startswith("6011") or pan.startswith("65") or 644 <= int(pan[:3]) <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two == 62:
        return "unionpay"
    return "other"


def normalize_pan(raw: str) -> str:
    """Strips spaces and dashes; rejects anything that is not a Luhn-valid card number."""
    pan = raw.replace(" ", "").replace("-", "")
    if not luhn_valid(pan):
        raise CardError("card number rejected: not 12-19 digits passing the Luhn check")
    return pan


HEX_AS_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def letters_hex(hex_digits: str) -> str:
    """Hex digits spelled with the letters a-p: a hash that can never contain a digit run a PAN scanner
    would flag (32 hex characters of a random hash hold a Luhn-valid 13+ digit run surprisingly often).
    In SQL: translate(<hex>, '0123456789abcdef', 'abcdefghijklmnop')."""
    return hex_digits.translate(HEX_AS_LETTERS)


def new_token() -> str:
    """`tok_` + 24 random alphanumerics (unguessable; carries no card data)."""
    return "tok_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class VaultKey:
    key_id: str
    data_key: bytes

    @property
    def fingerprint_key(self) -> bytes:
        return hmac.new(self.data_key, b"lakehouse card fingerprint v1", hashlib.sha256).digest()

    def fingerprint(self, pan: str) -> str:
        return letters_hex(hmac.new(self.fingerprint_key, pan.encode(), hashlib.sha256).hexdigest()[:32])

    def encrypt(self, pan: str, token: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.data_key).encrypt(nonce, pan.encode(), token.encode())

    def decrypt(self, blob: bytes, token: str) -> str:
        return AESGCM(self.data_key).decrypt(blob[:12], blob[12:], token.encode()).decode()


def load_vault_key(settings: Settings, create: bool = True) -> VaultKey:
    """The vault data key from the environment, else the local generated key file."""
    raw = os.environ.get(KEY_ENV)
    if raw is None:
        path = secrets_dir(settings) / "vault_key"
        if not path.exists():
            if not create:
                raise ConfigError(f"{KEY_ENV} is not set and {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        raw = path.read_text().strip()
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ConfigError(f"{KEY_ENV}: not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"{KEY_ENV}: must decode to 32 bytes, got {len(key)}")
    return VaultKey(key_id="k1-" + hashlib.sha256(key).hexdigest()[:8], data_key=key)


@dataclass(frozen=True)
class TokenizedCard:
    token: str
    brand: str
    bin: str
    last4: str
    fingerprint: str


def tokenize(key: VaultKey, raw_pan: str) -> TokenizedCard:
    """Validates the PAN and returns its token and safe attributes. The caller inserts the card row
    and then calls `store_pan` in the same transaction (the vault row references the card's token)."""
    pan = normalize_pan(raw_pan)
    return TokenizedCard(token=new_token(), brand=card_brand(pan), bin=pan[:6], last4=pan[-4:],
                         fingerprint=key.fingerprint(pan))


def store_pan(conn: Any, key: VaultKey, token: str, raw_pan: str) -> None:
    """Encrypts the PAN and stores it through `vault.store_pan` (the only write path into the vault)."""
    pan = normalize_pan(raw_pan)
    conn.execute("SELECT vault.store_pan(%s, %s, %s)", (token, key.encrypt(pan, token), key.key_id))


def reveal_pan(vault_conn: Any, key: VaultKey, token: str) -> str:
    """Decrypts a stored PAN; `vault_conn` must be a role with `vault_reader` (the application has not)."""
    row = vault_conn.execute("SELECT pan_encrypted FROM vault.card_pans WHERE token = %s", (token,)).fetchone()
    if row is None:
        raise KeyError(f"no card in the vault for token {token}")
    return key.decrypt(bytes(row[0]), token)
