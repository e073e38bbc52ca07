"""Envelope encryption: one master key from the environment, one data key per customer in PostgreSQL.

Key hierarchy (docs/security.md):

    master key      $LAKEHOUSE_MASTER_KEY (the variable named by `security.master_key_env`, base64 of
                    32 bytes), or on the local stack a generated file `<state_dir>/secrets/master_key`
                    (0600). Never stored in PostgreSQL, Delta, Kafka or a log.
    ├── data keys   32 random bytes per customer, stored in `security.data_keys` only wrapped: AES-256-GCM
    │               under the master key, the customer id as associated data (a wrapped key copied to
    │               another customer's row does not unwrap), with the master key's id. Unwrapped only in
    │               memory, for one batch. They encrypt the customer's direct identifiers in silver.
    └── pseudonym key   HMAC-SHA256(master key, "lakehouse pseudonym v1"): the keyed hash of the
                    pseudonyms (the same e-mail gives the same pseudonym in every table and every run).

Crypto-shredding: `destroy_data_key` replaces a customer's wrapped key by a tombstone (no key, the time it
was destroyed). From then on their ciphertext in silver cannot be decrypted by anyone, and
`ensure_data_keys` never makes a new key for them (a replayed change cannot bring their data back under
a fresh key). What remains physically: the old row version in PostgreSQL's heap until VACUUM and in WAL
and backups until they age out; that copy is still wrapped by the master key.

Nothing here logs key material or puts it into an exception message; the key classes keep their bytes
out of `repr`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lakehouse.common.config import ConfigError, Settings
from lakehouse.common.connections import secrets_dir

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master_key"
DATA_KEYS_TABLE = "security.data_keys"
_WRAP_AAD = b"lakehouse data key v1:"
_PSEUDONYM_INFO = b"lakehouse pseudonym v1"
_KEY_ID_INFO = b"lakehouse master key id v1"


class DataKeyError(RuntimeError):
    """A key could not be loaded or unwrapped; the message names the customer or setting, never a key."""


@dataclass(frozen=True)
class PseudonymKey:
    """The key of the keyed-hash pseudonyms (derived from the master key)."""

    key: bytes = field(repr=False)


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes = field(repr=False)

    @property
    def pseudonym_key(self) -> PseudonymKey:
        return PseudonymKey(hmac.new(self.key, _PSEUDONYM_INFO, hashlib.sha256).digest())


@dataclass(frozen=True)
class DataKeys:
    """The unwrapped data keys of one batch's customers, and the pseudonym key.

    `keys` holds every requested customer that has a live key; `destroyed` the requested customers
    whose key was destroyed (their PII is neither encrypted nor pseudonymized any more)."""

    master_key_id: str
    keys: Mapping[int, bytes] = field(repr=False)
    pseudonym: PseudonymKey = field(repr=False)
    destroyed: frozenset[int] = frozenset()


def _decode_master(raw: str, source: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        raise ConfigError(f"{source}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{source}: must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def master_key_id(key: bytes) -> str:
    """A short public id of a master key (a keyed hash of it: reveals nothing about the key)."""
    return "mk1-" + hmac.new(key, _KEY_ID_INFO, hashlib.sha256).hexdigest()[:12]


def load_master_key(settings: Settings, create: bool = True) -> MasterKey:
    """The master key from the variable named by `security.master_key_env`, else the local key file
    (created, 0600, when `create` and missing)."""
    env = settings.security.master_key_env
    raw = os.environ.get(env)
    if raw is not None:
        key = _decode_master(raw, env)
        return MasterKey(master_key_id(key), key)
    path = secrets_dir(settings) / MASTER_KEY_FILE
    if not path.exists():
        if not create:
            raise ConfigError(f"security.master_key_env: {env} is not set and {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:   # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
    key = _decode_master(path.read_text(), str(path))
    return MasterKey(master_key_id(key), key)


def _aad(customer_id: int) -> bytes:
    return _WRAP_AAD + str(customer_id).encode()


def wrap_data_key(master: MasterKey, customer_id: int, data_key: bytes) -> bytes:
    """nonce (12 bytes) + AES-256-GCM(master, data_key, aad = the customer id)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, _aad(customer_id))


def unwrap_data_key(master: MasterKey, customer_id: int, wrapped: bytes, key_id: str) -> bytes:
    """The data key of `customer_id`; fails naming the customer when it was wrapped by another master
    key or does not belong to this customer."""
    if key_id != master.key_id:
        raise DataKeyError(f"data key of customer {customer_id} is wrapped by master key {key_id}, "
                        f"the current master key is {master.key_id}")
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _aad(customer_id))
    except InvalidTag:
        raise DataKeyError(f"data key of customer {customer_id} does not unwrap (tampered, or another "
                        "customer's)") from None


def _read_keys(conn: Any, master: MasterKey, ids: list[int]) -> DataKeys:
    rows = conn.execute(f"SELECT customer_id, wrapped_key, master_key_id FROM {DATA_KEYS_TABLE} "
                        "WHERE customer_id = ANY(%s)", (ids,)).fetchall()
    keys = {cid: unwrap_data_key(master, cid, bytes(w), kid) for cid, w, kid in rows if w is not None}
    destroyed = frozenset(cid for cid, w, _ in rows if w is None)
    return DataKeys(master.key_id, keys, master.pseudonym_key, destroyed)


def load_data_keys(conn: Any, master: MasterKey, customer_ids: Iterable[int]) -> DataKeys:
    """The existing data keys of `customer_ids` (read only; customers without a key are absent)."""
    return _read_keys(conn, master, sorted(set(customer_ids)))


def ensure_data_keys(conn: Any, master: MasterKey, customer_ids: Iterable[int]) -> DataKeys:
    """The data keys of `customer_ids`, creating the missing ones (INSERT … ON CONFLICT DO NOTHING, so
    concurrent batches agree on one key per customer), in one transaction. Destroyed keys stay
    destroyed."""
    ids = sorted(set(customer_ids))
    with conn.transaction():
        have = {r[0] for r in conn.execute(f"SELECT customer_id FROM {DATA_KEYS_TABLE} WHERE customer_id = ANY(%s)",
                                           (ids,)).fetchall()}
        missing = [cid for cid in ids if cid not in have]
        if missing:
            wrapped = [wrap_data_key(master, cid, os.urandom(KEY_BYTES)) for cid in missing]
            conn.execute(f"INSERT INTO {DATA_KEYS_TABLE} (customer_id, wrapped_key, master_key_id) "
                         "SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[]) "
                         "ON CONFLICT (customer_id) DO NOTHING",
                         (missing, wrapped, [master.key_id] * len(missing)))
        return _read_keys(conn, master, ids)


def destroy_data_key(conn: Any, customer_id: int) -> bool:
    """Crypto-shreds a customer: their data key becomes a tombstone (also when they had none yet, so
    that none is ever made). Returns True when a live key was destroyed."""
    with conn.transaction():
        row = conn.execute(
            f"SELECT wrapped_key IS NOT NULL FROM {DATA_KEYS_TABLE} WHERE customer_id = %s FOR UPDATE",
            (customer_id,)).fetchone()
        conn.execute(f"INSERT INTO {DATA_KEYS_TABLE} AS k (customer_id, wrapped_key, master_key_id, destroyed_at) "
                     "VALUES (%s, NULL, NULL, now()) ON CONFLICT (customer_id) DO UPDATE "
                     "SET wrapped_key = NULL, master_key_id = NULL, "
                     "destroyed_at = coalesce(k.destroyed_at, now())", (customer_id,))
    return bool(row and row[0])


def data_keys_for(settings: Settings, customer_ids: Iterable[int]) -> DataKeys:
    """`ensure_data_keys` over a connection of the application role, with the configured master key."""
    from lakehouse.oltp.db import connect

    master = load_master_key(settings)
    with connect(settings) as conn:
        return ensure_data_keys(conn, master, customer_ids)
