-- Replica identity for change data capture (Debezium over pgoutput; see docs/cdc.md).
--
-- REPLICA IDENTITY decides which old values PostgreSQL writes to the WAL for an UPDATE or DELETE, and
-- so what a change event's `before` holds. With DEFAULT (the primary key) an update carries no
-- before-image at all and a delete carries the key only: Debezium then fills the other NOT NULL columns
-- of `before` with placeholders ('' and 0), values that never existed. With FULL both carry the whole
-- old row, which downstream needs to retract a row's old contribution from an aggregate, to check a
-- state transition (authorized -> captured, needs_response -> lost) and to know what a delete removed.
--
-- Rule: FULL on every table whose rows the application can update or delete (the cost, a larger WAL
-- record, is paid only by those updates and deletes); DEFAULT where the database makes a row immutable
-- once inserted, so there is never an old row to log:
--   payments.balance_transactions  append-only (its trigger rejects UPDATE and DELETE for every role)
--   payments.import_batches, payments.imported_charges  insert-only (UPDATE, DELETE revoked in V003)
-- The vault is never published, so its identity does not matter.

ALTER TABLE ref.regions REPLICA IDENTITY FULL;
ALTER TABLE ref.currencies REPLICA IDENTITY FULL;
ALTER TABLE ref.countries REPLICA IDENTITY FULL;
ALTER TABLE ref.fx_rates REPLICA IDENTITY FULL;
ALTER TABLE ref.merchant_categories REPLICA IDENTITY FULL;
ALTER TABLE ref.ip_networks REPLICA IDENTITY FULL;

ALTER TABLE payments.merchants REPLICA IDENTITY FULL;
ALTER TABLE payments.terminals REPLICA IDENTITY FULL;
ALTER TABLE payments.customers REPLICA IDENTITY FULL;
ALTER TABLE payments.products REPLICA IDENTITY FULL;
ALTER TABLE payments.plans REPLICA IDENTITY FULL;
ALTER TABLE payments.payment_methods REPLICA IDENTITY FULL;
ALTER TABLE payments.cards REPLICA IDENTITY FULL;
ALTER TABLE payments.wallets REPLICA IDENTITY FULL;
ALTER TABLE payments.bank_debits REPLICA IDENTITY FULL;
ALTER TABLE payments.charges REPLICA IDENTITY FULL;
ALTER TABLE payments.idempotency_keys REPLICA IDENTITY FULL;
ALTER TABLE payments.refunds REPLICA IDENTITY FULL;
ALTER TABLE payments.disputes REPLICA IDENTITY FULL;
ALTER TABLE payments.subscriptions REPLICA IDENTITY FULL;
ALTER TABLE payments.invoices REPLICA IDENTITY FULL;

ALTER TABLE labels.fraud_ground_truth REPLICA IDENTITY FULL;

-- Partitions. The old row is logged by the partition that holds it, with the partition's own replica
-- identity; ALTER TABLE on a partitioned table sets the parent's only (PostgreSQL 15 neither recurses to
-- the existing partitions nor copies it to new ones). So every existing partition takes its parent's
-- setting here, and ensure_month_partitions gives each new one its parent's setting below.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT i.inhrelid::regclass AS part, p.relreplident
               FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.oid IN ('payments.charges'::regclass, 'payments.balance_transactions'::regclass)
    LOOP
        IF r.relreplident = 'f' THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', r.part);
        END IF;
    END LOOP;
END $$;

-- As in V002 (same signature, SECURITY DEFINER, pinned search_path, fillfactor 90), plus: a new
-- partition takes its parent's replica identity (FULL or NOTHING; DEFAULT is what it has already).
CREATE OR REPLACE FUNCTION payments.ensure_month_partitions(p_table text, p_from date, p_to date) RETURNS int
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m date := date_trunc('month', p_from)::date;
    made int := 0;
    part text;
    identity "char";
BEGIN
    IF p_table NOT IN ('charges', 'balance_transactions') THEN
        RAISE EXCEPTION 'ensure_month_partitions: % is not a partitioned payments table', p_table;
    END IF;
    SELECT c.relreplident INTO identity FROM pg_class c WHERE c.oid = format('payments.%I', p_table)::regclass;
    WHILE m <= p_to LOOP
        part := format('%s_%s', p_table, to_char(m, 'YYYY_MM'));
        IF to_regclass('payments.' || part) IS NULL THEN
            -- fillfactor 90: room on each page for the capture / refund updates to stay HOT
            EXECUTE format('CREATE TABLE payments.%I PARTITION OF payments.%I FOR VALUES FROM (%L) TO (%L) '
                           'WITH (fillfactor = 90)', part, p_table, m, (m + interval '1 month')::date);
            IF identity = 'f' THEN
                EXECUTE format('ALTER TABLE payments.%I REPLICA IDENTITY FULL', part);
            ELSIF identity = 'n' THEN
                EXECUTE format('ALTER TABLE payments.%I REPLICA IDENTITY NOTHING', part);
            END IF;
            made := made + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN made;
END $$;
