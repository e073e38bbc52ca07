-- gold.agg_fraud_daily from silver, one row per payment (the pack's query sums them): the charge with
-- its fraud label, whether a dispute was opened, the merchant's MCC in the version in effect at the
-- payment (the first version reaches back to 1900, as in gold), the payer's IP country ('ZZ' when not a
-- known country), the card's issuing country (of a current payment method; 'ZZ' when none). Amounts in
-- gold's sum type.
WITH merchant_versions AS (
    SELECT merchant_id, mcc, _is_deleted, valid_to,
           CASE WHEN ROW_NUMBER() OVER (PARTITION BY merchant_id ORDER BY _seq_lsn, _seq_offset) = 1
                THEN TIMESTAMP'1900-01-01 00:00:00' ELSE valid_from END AS valid_from
    FROM silver.merchants
), card_countries AS (
    SELECT pm.payment_method_id, cd.issuing_country
    FROM silver.payment_methods pm
    LEFT JOIN silver.cards cd ON cd.payment_method_id = pm.payment_method_id
    WHERE pm.is_current
), flagged AS (
    SELECT c.*, l.is_fraud, d.charge_id IS NOT NULL AS disputed
    FROM silver.charges c
    LEFT JOIN silver.fraud_ground_truth l ON l.charge_id = c.charge_id
    LEFT JOIN (SELECT DISTINCT charge_id FROM silver.disputes) d ON d.charge_id = c.charge_id
)
SELECT CAST(f.created_at AS DATE) AS date,
       HOUR(f.created_at) AS hour,
       f.merchant_id,
       COALESCE(mv.mcc, 'unknown') AS mcc,
       COALESCE(g.country_code, 'ZZ') AS country_code,
       COALESCE(f.device_type, 'unknown') AS device_type,
       COALESCE(cc.issuing_country, 'ZZ') AS bin_country,
       CAST(1 AS BIGINT) AS payments,
       CAST(f.amount_usd AS DECIMAL(38, 2)) AS amount_usd,
       CAST(CASE WHEN f.is_fraud THEN 1 ELSE 0 END AS BIGINT) AS fraud_payments,
       CAST(CASE WHEN f.is_fraud THEN f.amount_usd ELSE 0 END AS DECIMAL(38, 2)) AS fraud_amount_usd,
       CAST(CASE WHEN f.disputed THEN 1 ELSE 0 END AS BIGINT) AS disputed_payments,
       CAST(CASE WHEN f.disputed THEN f.amount_usd ELSE 0 END AS DECIMAL(38, 2)) AS disputed_amount_usd
FROM flagged f
LEFT JOIN merchant_versions mv
       ON mv.merchant_id = f.merchant_id AND NOT mv._is_deleted AND f.created_at >= mv.valid_from
      AND (mv.valid_to IS NULL OR f.created_at < mv.valid_to)
LEFT JOIN silver.ref_countries g ON g.country_code = f.ip_country
LEFT JOIN card_countries cc ON cc.payment_method_id = f.payment_method_id
