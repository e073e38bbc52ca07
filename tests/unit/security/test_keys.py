"""security.keys without PostgreSQL: the master key's sources, wrapping, and no key in a repr."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from pathlib import Path

import pytest

from lakehouse.common.config import ConfigError
from lakehouse.security.keys import (
    DataKeyError,
    DataKeys,
    MasterKey,
    load_master_key,
    master_key_id,
    unwrap_data_key,
    wrap_data_key,
)

KEY = bytes(range(32))


def in_state_dir(settings, path: Path):
    return dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, state_dir=str(path)))


def test_master_key_from_the_environment(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.security.master_key_env, base64.b64encode(KEY).decode())
    assert load_master_key(settings) == MasterKey(master_key_id(KEY), KEY)
    monkeypatch.setenv(settings.security.master_key_env, base64.b64encode(KEY[:16]).decode())
    with pytest.raises(ConfigError, match=r"LAKEHOUSE_MASTER_KEY: must decode to 32 bytes, got 16"):
        load_master_key(settings)
    monkeypatch.setenv(settings.security.master_key_env, "not base64!")
    with pytest.raises(ConfigError, match=r"LAKEHOUSE_MASTER_KEY: not valid base64"):
        load_master_key(settings)


def test_master_key_file_is_generated_once_0600(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.security.master_key_env, raising=False)
    local = in_state_dir(settings, tmp_path)
    with pytest.raises(ConfigError, match=r"is not set and .* does not exist"):
        load_master_key(local, create=False)
    first = load_master_key(local)
    path = tmp_path / "secrets" / "master_key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_master_key(local) == first and len(first.key) == 32
    assert first.key_id == master_key_id(first.key) and first.key_id.startswith("mk1-")


def test_wrap_unwrap_binds_the_key_to_its_customer_and_master() -> None:
    master = MasterKey(master_key_id(KEY), KEY)
    data_key = os.urandom(32)
    wrapped = wrap_data_key(master, 42, data_key)
    assert len(wrapped) == 60 and data_key not in wrapped
    assert unwrap_data_key(master, 42, wrapped, master.key_id) == data_key
    with pytest.raises(DataKeyError, match=r"^data key of customer 43 does not unwrap"):
        unwrap_data_key(master, 43, wrapped, master.key_id)
    other = MasterKey(master_key_id(bytes(32)), bytes(32))
    with pytest.raises(DataKeyError, match=rf"customer 42 is wrapped by master key {master.key_id}, the current "
                                           rf"master key is {other.key_id}"):
        unwrap_data_key(other, 42, wrapped, master.key_id)


def test_no_key_material_in_reprs() -> None:
    master = MasterKey(master_key_id(KEY), KEY)
    keys = DataKeys(master.key_id, {1: os.urandom(32)}, master.pseudonym_key, frozenset({2}))
    for text in (repr(master), repr(keys), repr(master.pseudonym_key), str(keys)):
        assert "key=" not in text and "\\x" not in text and KEY.hex() not in text
    assert repr(keys) == f"DataKeys(master_key_id='{master.key_id}', destroyed=frozenset({{2}}))"
