-- gold.agg_fraud_dimension_daily from silver: each payment of agg_fraud_daily's twin (one row per payment)
-- once per dimension, with that dimension's value (the pack's query sums them).
SELECT f.date, d.dimension, d.value, f.payments, f.amount_usd, f.fraud_payments, f.fraud_amount_usd,
       f.disputed_payments, f.disputed_amount_usd
FROM gold.agg_fraud_daily f
LATERAL VIEW INLINE(ARRAY(
    STRUCT('device' AS dimension, f.device_type AS value),
    STRUCT('country', f.country_code),
    STRUCT('hour', LPAD(CAST(f.hour AS STRING), 2, '0')),
    STRUCT('bin_country', f.bin_country),
    STRUCT('merchant', CAST(f.merchant_id AS STRING)),
    STRUCT('mcc', f.mcc))) d AS dimension, value
