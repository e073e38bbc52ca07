-- Server-side payment operations: one round trip for the hot path (authorize + capture + ledger),
-- with every rule still enforced by the table triggers the statements go through.

-- The platform fee: 2.9 % of the amount, rounded half-up, plus 30 minor units (as service.platform_fee).
CREATE FUNCTION payments.platform_fee(p_amount bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT (p_amount * 29 + 500) / 1000 + 30 $$;

-- Captures an authorized charge (fully, or p_amount) and books it in the ledger.
CREATE FUNCTION payments.capture_charge(p_charge_id bigint, p_created_at timestamptz, p_amount bigint DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    UPDATE payments.charges SET status = 'captured', captured_amount_minor = coalesce(p_amount, amount_minor)
     WHERE charge_id = p_charge_id AND created_at = p_created_at
    RETURNING merchant_id, captured_amount_minor AS amount, currency_code, captured_at INTO r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'charge % does not exist', p_charge_id USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO payments.balance_transactions (created_at, merchant_id, kind, charge_id, charge_created_at,
                                               amount_minor, fee_minor, net_minor, currency_code)
    VALUES (r.captured_at, r.merchant_id, 'charge', p_charge_id, p_created_at, r.amount,
            payments.platform_fee(r.amount), r.amount - payments.platform_fee(r.amount), r.currency_code);
END $$;

-- Create, authorize and capture a charge in one call (the card-not-present "sale"): the charge is
-- created already authorized (the authorization decision is part of the request), then captured.
CREATE FUNCTION payments.pay(p_merchant_id bigint, p_customer_id bigint, p_payment_method_id bigint,
                             p_amount_minor bigint, p_currency_code char(3), p_device_type text,
                             p_ip_address inet DEFAULT NULL, p_terminal_id bigint DEFAULT NULL,
                             p_risk_score numeric DEFAULT NULL,
                             OUT o_charge_id bigint, OUT o_created_at timestamptz)
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payments.charges (merchant_id, terminal_id, customer_id, payment_method_id, amount_minor,
                                  currency_code, device_type, ip_address, risk_score, status, authorized_at)
    VALUES (p_merchant_id, p_terminal_id, p_customer_id, p_payment_method_id, p_amount_minor, p_currency_code,
            p_device_type, p_ip_address, p_risk_score, 'authorized', now())
    RETURNING charge_id, created_at INTO o_charge_id, o_created_at;
    PERFORM payments.capture_charge(o_charge_id, o_created_at);
END $$;

REVOKE ALL ON FUNCTION payments.capture_charge(bigint, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION payments.pay(bigint, bigint, bigint, bigint, char, text, inet, bigint, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION payments.capture_charge(bigint, timestamptz, bigint) TO payments_app;
GRANT EXECUTE ON FUNCTION payments.pay(bigint, bigint, bigint, bigint, char, text, inet, bigint, numeric) TO payments_app;
