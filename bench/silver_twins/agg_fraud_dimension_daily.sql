-- gold.agg_fraud_dimension_daily from silver: each payment of agg_fraud_daily's twin (one row per payment)
-- once per dimension, with that dimension's value (the pack's query sums them).
SELECT f.date, d.dimension, d.value, f.payments, f.amount_usd, f.fraud_payments, f.fraud_amount_usd,
       f.disputed_payments, f.disputed_amount_usd
FROM gold.agg_fraud_daily f
LATERAL VIEW INLINE(ARRAY(
    NAMED_STRUCT('dimension', 'device', 'value', f.device_type),
    NAMED_STRUCT('dimension', 'country', 'value', f.country_code),
    NAMED_STRUCT('dimension', 'hour', 'value', LPAD(CAST(f.hour AS STRING), 2, '0')),
    NAMED_STRUCT('dimension', 'bin_country', 'value', f.bin_country),
    NAMED_STRUCT('dimension', 'merchant', 'value', CAST(f.merchant_id AS STRING)),
    NAMED_STRUCT('dimension', 'mcc', 'value', f.mcc))) d AS dimension, value
