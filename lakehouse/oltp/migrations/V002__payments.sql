-- Payments: charges (the transactions), refunds, disputes, subscriptions, invoices, the ledger,
-- idempotency keys, and the simulator's fraud ground truth. High-volume tables are range-partitioned
-- by month on created_at. Business rules live here, in constraints and triggers, not only in Python.

-- ---------------------------------------------------------------- partitions
-- Monthly partitions [first of month, first of next month) for a partitioned table, idempotent.
-- SECURITY DEFINER: the application may add partitions without owning the tables.
CREATE FUNCTION payments.ensure_month_partitions(p_table text, p_from date, p_to date) RETURNS int
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m date := date_trunc('month', p_from)::date;
    made int := 0;
    part text;
BEGIN
    IF p_table NOT IN ('charges', 'balance_transactions') THEN
        RAISE EXCEPTION 'ensure_month_partitions: % is not a partitioned payments table', p_table;
    END IF;
    WHILE m <= p_to LOOP
        part := format('%s_%s', p_table, to_char(m, 'YYYY_MM'));
        IF to_regclass('payments.' || part) IS NULL THEN
            -- fillfactor 90: room on each page for the capture / refund updates to stay HOT
            EXECUTE format('CREATE TABLE payments.%I PARTITION OF payments.%I FOR VALUES FROM (%L) TO (%L) '
                           'WITH (fillfactor = 90)', part, p_table, m, (m + interval '1 month')::date);
            made := made + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN made;
END $$;
REVOKE ALL ON FUNCTION payments.ensure_month_partitions(text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION payments.ensure_month_partitions(text, date, date) TO payments_app;

-- ---------------------------------------------------------------- charges
CREATE SEQUENCE payments.charges_charge_id_seq;

-- One row per payment attempt. `charge_id` is the transaction id.
CREATE TABLE payments.charges (
    charge_id              bigint NOT NULL DEFAULT nextval('payments.charges_charge_id_seq'),
    created_at             timestamptz NOT NULL DEFAULT now(),
    merchant_id            bigint NOT NULL REFERENCES payments.merchants,
    terminal_id            bigint REFERENCES payments.terminals,
    customer_id            bigint NOT NULL REFERENCES payments.customers,
    payment_method_id      bigint NOT NULL REFERENCES payments.payment_methods,
    amount_minor           bigint NOT NULL CHECK (amount_minor > 0),
    currency_code          char(3) NOT NULL REFERENCES ref.currencies,
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'authorized', 'captured', 'failed', 'canceled')),
    captured_amount_minor  bigint NOT NULL DEFAULT 0,
    refunded_amount_minor  bigint NOT NULL DEFAULT 0,
    failure_code           text,
    description            text,
    device_type            text NOT NULL CHECK (device_type IN ('mobile', 'desktop', 'tablet', 'pos', 'unknown')),
    ip_address             inet,
    ip_country             char(2) REFERENCES ref.countries,       -- IP-derived geolocation
    ip_city                text,
    ip_latitude            numeric(8, 5),
    ip_longitude           numeric(8, 5),
    risk_score             numeric(5, 4) CHECK (risk_score BETWEEN 0 AND 1),     -- fraud indicators
    anomaly_score          numeric(7, 3) CHECK (anomaly_score >= 0),
    authorized_at          timestamptz,
    captured_at            timestamptz,
    failed_at              timestamptz,
    canceled_at            timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (charge_id, created_at),
    CHECK (captured_amount_minor BETWEEN 0 AND amount_minor),
    CHECK ((status = 'captured') = (captured_amount_minor > 0)),
    CHECK (refunded_amount_minor BETWEEN 0 AND captured_amount_minor),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL))
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE payments.charges_charge_id_seq OWNED BY payments.charges.charge_id;
CREATE TABLE payments.charges_default PARTITION OF payments.charges DEFAULT;

CREATE INDEX charges_merchant_time ON payments.charges (merchant_id, created_at);
CREATE INDEX charges_customer_time ON payments.charges (customer_id, created_at);
CREATE INDEX charges_method_time ON payments.charges (payment_method_id, created_at);
CREATE INDEX charges_open ON payments.charges (created_at) WHERE status IN ('pending', 'authorized');

-- Geolocation from the IP (when the caller did not supply it), on every insert path incl. COPY.
CREATE FUNCTION payments.charges_geolocate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ip_address IS NOT NULL AND NEW.ip_country IS NULL THEN
        SELECT n.country_code, n.city, n.latitude, n.longitude
          INTO NEW.ip_country, NEW.ip_city, NEW.ip_latitude, NEW.ip_longitude
          FROM ref.ip_networks n WHERE n.network >>= NEW.ip_address
         ORDER BY masklen(n.network) DESC LIMIT 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER charges_geolocate BEFORE INSERT ON payments.charges
    FOR EACH ROW EXECUTE FUNCTION payments.charges_geolocate();

-- The status lifecycle: pending -> authorized -> captured, with failed / canceled exits.
CREATE FUNCTION payments.charges_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.amount_minor, NEW.currency_code, NEW.merchant_id, NEW.customer_id, NEW.payment_method_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.amount_minor, OLD.currency_code, OLD.merchant_id, OLD.customer_id, OLD.payment_method_id, OLD.created_at) THEN
        RAISE EXCEPTION 'charge %: amount, currency, parties and created_at are immutable', OLD.charge_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT ((OLD.status = 'pending' AND NEW.status IN ('authorized', 'failed', 'canceled'))
             OR (OLD.status = 'authorized' AND NEW.status IN ('captured', 'failed', 'canceled'))) THEN
            RAISE EXCEPTION 'charge %: status transition % -> % is not allowed', OLD.charge_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        CASE NEW.status
            WHEN 'authorized' THEN NEW.authorized_at := coalesce(NEW.authorized_at, now());
            WHEN 'captured' THEN NEW.captured_at := coalesce(NEW.captured_at, now());
            WHEN 'failed' THEN NEW.failed_at := coalesce(NEW.failed_at, now());
            WHEN 'canceled' THEN NEW.canceled_at := coalesce(NEW.canceled_at, now());
            ELSE NULL;
        END CASE;
    ELSIF NEW.captured_amount_minor IS DISTINCT FROM OLD.captured_amount_minor THEN
        RAISE EXCEPTION 'charge %: the captured amount changes only with the capture itself', OLD.charge_id
            USING ERRCODE = 'check_violation';
    END IF;
    -- A statement that sets updated_at itself (a refund, at its own time) is trusted; else now().
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := greatest(now(), OLD.updated_at);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER charges_guard_update BEFORE UPDATE ON payments.charges
    FOR EACH ROW EXECUTE FUNCTION payments.charges_guard_update();

-- ---------------------------------------------------------------- idempotency
-- A request repeated with the same key returns the original charge and never charges twice.
CREATE TABLE payments.idempotency_keys (
    merchant_id        bigint NOT NULL REFERENCES payments.merchants,
    idempotency_key    text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash       text NOT NULL,
    charge_id          bigint NOT NULL,
    charge_created_at  timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, idempotency_key),
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at)
);

-- ---------------------------------------------------------------- refunds
CREATE TABLE payments.refunds (
    refund_id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    charge_id          bigint NOT NULL,
    charge_created_at  timestamptz NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency_code      char(3) NOT NULL REFERENCES ref.currencies,
    reason             text NOT NULL CHECK (reason IN ('requested_by_customer', 'duplicate', 'fraudulent', 'other')),
    status             text NOT NULL DEFAULT 'succeeded' CHECK (status IN ('pending', 'succeeded', 'failed')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at)
);
CREATE INDEX refunds_charge ON payments.refunds (charge_id, charge_created_at);

-- The running refunded total lives on the charge and is bounded there by a CHECK: every refund
-- updates that row, so concurrent refunds of one charge serialize on its row lock and the sum of
-- refunds can never exceed the captured amount.
CREATE FUNCTION payments.refunds_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
    ch record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta := CASE WHEN NEW.status = 'failed' THEN 0 ELSE NEW.amount_minor END;
    ELSE
        IF (NEW.charge_id, NEW.charge_created_at, NEW.amount_minor) IS DISTINCT FROM
           (OLD.charge_id, OLD.charge_created_at, OLD.amount_minor) THEN
            RAISE EXCEPTION 'refund %: charge and amount are immutable', OLD.refund_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF OLD.status <> NEW.status AND NOT (OLD.status = 'pending' AND NEW.status IN ('succeeded', 'failed')) THEN
            RAISE EXCEPTION 'refund %: status transition % -> % is not allowed', OLD.refund_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        delta := CASE WHEN NEW.status = 'failed' AND OLD.status <> 'failed' THEN -OLD.amount_minor ELSE 0 END;
        NEW.updated_at := now();
    END IF;
    SELECT status, currency_code, captured_amount_minor, refunded_amount_minor INTO ch
      FROM payments.charges WHERE charge_id = NEW.charge_id AND created_at = NEW.charge_created_at FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refund: charge % does not exist', NEW.charge_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF ch.status <> 'captured' THEN
        RAISE EXCEPTION 'refund: charge % is %, only captured charges can be refunded', NEW.charge_id, ch.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF ch.currency_code <> NEW.currency_code THEN
        RAISE EXCEPTION 'refund: currency % differs from the charge''s %', NEW.currency_code, ch.currency_code
            USING ERRCODE = 'check_violation';
    END IF;
    IF ch.refunded_amount_minor + delta > ch.captured_amount_minor THEN
        RAISE EXCEPTION 'refund: % would exceed the captured amount of charge % (% captured, % already refunded)',
            NEW.amount_minor, NEW.charge_id, ch.captured_amount_minor, ch.refunded_amount_minor
            USING ERRCODE = 'check_violation';
    END IF;
    IF delta <> 0 THEN
        UPDATE payments.charges SET refunded_amount_minor = refunded_amount_minor + delta,
                                    updated_at = greatest(updated_at, coalesce(NEW.updated_at, now()))
         WHERE charge_id = NEW.charge_id AND created_at = NEW.charge_created_at;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refunds_apply BEFORE INSERT OR UPDATE ON payments.refunds
    FOR EACH ROW EXECUTE FUNCTION payments.refunds_apply();

-- ---------------------------------------------------------------- disputes
CREATE TABLE payments.disputes (
    dispute_id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    charge_id          bigint NOT NULL,
    charge_created_at  timestamptz NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency_code      char(3) NOT NULL REFERENCES ref.currencies,
    reason             text NOT NULL CHECK (reason IN ('fraudulent', 'product_not_received', 'duplicate',
                                                       'subscription_canceled', 'unrecognized', 'other')),
    status             text NOT NULL DEFAULT 'needs_response'
                       CHECK (status IN ('needs_response', 'under_review', 'won', 'lost')),
    opened_at          timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at),
    CHECK ((status IN ('won', 'lost')) = (closed_at IS NOT NULL)),
    CHECK (closed_at IS NULL OR closed_at >= opened_at)
);
CREATE INDEX disputes_charge ON payments.disputes (charge_id, charge_created_at);
CREATE INDEX disputes_open ON payments.disputes (opened_at) WHERE status IN ('needs_response', 'under_review');

CREATE FUNCTION payments.disputes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ch record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT status, currency_code, captured_amount_minor INTO ch FROM payments.charges
         WHERE charge_id = NEW.charge_id AND created_at = NEW.charge_created_at;
        IF NOT FOUND OR ch.status <> 'captured' THEN
            RAISE EXCEPTION 'dispute: charge % is not captured', NEW.charge_id USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.amount_minor > ch.captured_amount_minor OR NEW.currency_code <> ch.currency_code THEN
            RAISE EXCEPTION 'dispute: amount % % exceeds or mismatches charge % (% %)', NEW.amount_minor,
                NEW.currency_code, NEW.charge_id, ch.captured_amount_minor, ch.currency_code
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.opened_at < NEW.charge_created_at THEN
            RAISE EXCEPTION 'dispute: opened before its charge' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.charge_id, NEW.amount_minor, NEW.opened_at) IS DISTINCT FROM (OLD.charge_id, OLD.amount_minor, OLD.opened_at) THEN
        RAISE EXCEPTION 'dispute %: charge, amount and opened_at are immutable', OLD.dispute_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'needs_response' AND NEW.status IN ('under_review', 'won', 'lost'))
        OR (OLD.status = 'under_review' AND NEW.status IN ('won', 'lost'))) THEN
        RAISE EXCEPTION 'dispute %: status transition % -> % is not allowed', OLD.dispute_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER disputes_guard BEFORE INSERT OR UPDATE ON payments.disputes
    FOR EACH ROW EXECUTE FUNCTION payments.disputes_guard();

-- ---------------------------------------------------------------- subscriptions and invoices
CREATE TABLE payments.subscriptions (
    subscription_id       bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id           bigint NOT NULL REFERENCES payments.customers,
    plan_id               bigint NOT NULL REFERENCES payments.plans,
    payment_method_id     bigint NOT NULL REFERENCES payments.payment_methods,
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'past_due', 'canceled')),
    current_period_start  timestamptz NOT NULL,
    current_period_end    timestamptz NOT NULL,
    canceled_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (current_period_end > current_period_start),
    CHECK ((status = 'canceled') = (canceled_at IS NOT NULL))
);
CREATE INDEX subscriptions_customer ON payments.subscriptions (customer_id);
CREATE INDEX subscriptions_due ON payments.subscriptions (current_period_end) WHERE status <> 'canceled';

CREATE FUNCTION payments.subscriptions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'active' AND NEW.status IN ('past_due', 'canceled'))
        OR (OLD.status = 'past_due' AND NEW.status IN ('active', 'canceled'))) THEN
        RAISE EXCEPTION 'subscription %: status transition % -> % is not allowed', OLD.subscription_id,
            OLD.status, NEW.status USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER subscriptions_guard BEFORE UPDATE ON payments.subscriptions
    FOR EACH ROW EXECUTE FUNCTION payments.subscriptions_guard();

CREATE TABLE payments.invoices (
    invoice_id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    subscription_id    bigint NOT NULL REFERENCES payments.subscriptions,
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency_code      char(3) NOT NULL REFERENCES ref.currencies,
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'void', 'uncollectible')),
    charge_id          bigint,
    charge_created_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    paid_at            timestamptz,
    UNIQUE (subscription_id, period_start),                    -- a renewal bills a period once
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at),
    CHECK (period_end > period_start),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND charge_id IS NOT NULL))
);
CREATE INDEX invoices_charge ON payments.invoices (charge_id, charge_created_at) WHERE charge_id IS NOT NULL;

-- ---------------------------------------------------------------- the ledger
-- Every money movement of a merchant's balance, signed (+ charge captured, - refund, - dispute,
-- + dispute won), with the fee and the net. Append-only.
CREATE SEQUENCE payments.balance_transactions_txn_id_seq;
CREATE TABLE payments.balance_transactions (
    txn_id             bigint NOT NULL DEFAULT nextval('payments.balance_transactions_txn_id_seq'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    merchant_id        bigint NOT NULL REFERENCES payments.merchants,
    kind               text NOT NULL CHECK (kind IN ('charge', 'refund', 'dispute', 'dispute_won')),
    charge_id          bigint NOT NULL,
    charge_created_at  timestamptz NOT NULL,
    refund_id          bigint REFERENCES payments.refunds,
    dispute_id         bigint REFERENCES payments.disputes,
    amount_minor       bigint NOT NULL,
    fee_minor          bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    net_minor          bigint NOT NULL,
    currency_code      char(3) NOT NULL REFERENCES ref.currencies,
    PRIMARY KEY (txn_id, created_at),
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at),
    CHECK (net_minor = amount_minor - fee_minor),
    CHECK (CASE kind WHEN 'charge' THEN amount_minor > 0 AND refund_id IS NULL AND dispute_id IS NULL
                     WHEN 'refund' THEN amount_minor < 0 AND refund_id IS NOT NULL AND dispute_id IS NULL
                     WHEN 'dispute' THEN amount_minor < 0 AND dispute_id IS NOT NULL AND refund_id IS NULL
                     WHEN 'dispute_won' THEN amount_minor > 0 AND dispute_id IS NOT NULL AND refund_id IS NULL END)
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE payments.balance_transactions_txn_id_seq OWNED BY payments.balance_transactions.txn_id;
CREATE TABLE payments.balance_transactions_default PARTITION OF payments.balance_transactions DEFAULT;
CREATE INDEX balance_transactions_merchant_time ON payments.balance_transactions (merchant_id, created_at);
CREATE INDEX balance_transactions_charge ON payments.balance_transactions (charge_id, charge_created_at);

CREATE FUNCTION payments.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER balance_transactions_append_only BEFORE UPDATE OR DELETE ON payments.balance_transactions
    FOR EACH ROW EXECUTE FUNCTION payments.append_only();

-- ---------------------------------------------------------------- fraud ground truth
-- Kept apart from payments: what the simulator (or an imported source) knows to be fraud. Models
-- train on labels as known after chargebacks (disputes), and are evaluated against this.
CREATE SCHEMA IF NOT EXISTS labels;
GRANT USAGE ON SCHEMA labels TO payments_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA labels GRANT SELECT, INSERT, UPDATE ON TABLES TO payments_app;
CREATE TABLE labels.fraud_ground_truth (
    charge_id          bigint NOT NULL,
    charge_created_at  timestamptz NOT NULL,
    is_fraud           boolean NOT NULL,
    scenario           text CHECK (scenario IN ('card_testing', 'account_takeover', 'compromised_terminal',
                                                'friendly_fraud', 'imported')),
    source             text NOT NULL DEFAULT 'simulator' CHECK (source IN ('simulator', 'import')),
    PRIMARY KEY (charge_id, charge_created_at),
    FOREIGN KEY (charge_id, charge_created_at) REFERENCES payments.charges (charge_id, created_at),
    CHECK (is_fraud = (scenario IS NOT NULL))
);

-- Partitions for the current and the next month exist from the start; backfills add their own.
SELECT payments.ensure_month_partitions('charges', (now() - interval '1 month')::date, (now() + interval '1 month')::date);
SELECT payments.ensure_month_partitions('balance_transactions', (now() - interval '1 month')::date,
                                        (now() + interval '1 month')::date);
