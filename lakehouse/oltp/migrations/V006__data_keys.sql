-- Per-customer data keys of the silver layer's envelope encryption (lakehouse/security/keys.py,
-- docs/security.md).
--
-- Each key is stored wrapped: AES-256-GCM under the master key, which comes from the environment and
-- never reaches the database. A destroyed key (crypto-shredding, for erasure) is a tombstone: no key,
-- the time it was destroyed; the row stays so that no new key is ever made for that customer.
--
-- Schema `security`, on purpose outside the CDC publication (FOR TABLES IN SCHEMA ref, payments,
-- labels; lakehouse/cdc/connector.py): key material never goes to Kafka or the lakehouse. No foreign key
-- to payments.customers: keys are made for the customer ids the lakehouse sees in the change stream,
-- which may include a customer deleted since, and a customer's deletion must not take the tombstone
-- with it.

CREATE SCHEMA IF NOT EXISTS security;
REVOKE ALL ON SCHEMA security FROM PUBLIC;

CREATE TABLE security.data_keys (
    customer_id    bigint PRIMARY KEY,
    wrapped_key    bytea CHECK (length(wrapped_key) = 60),      -- 12-byte nonce + 32-byte key + 16-byte tag
    master_key_id  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    destroyed_at   timestamptz,
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK ((wrapped_key IS NULL) = (master_key_id IS NULL))
);
REVOKE ALL ON security.data_keys FROM PUBLIC;

-- The lakehouse jobs connect as the application role: they create keys, read them, and destroy them
-- (an UPDATE to the tombstone). No DELETE: a tombstone is never removed.
GRANT USAGE ON SCHEMA security TO payments_app;
GRANT SELECT, INSERT, UPDATE ON security.data_keys TO payments_app;
