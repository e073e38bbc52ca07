-- name: fraud_rates
-- description: Fraud rate (labelled fraud / payments, by count and by USD amount) and dispute rate by one dimension: device, country (payer IP), hour, bin_country, merchant or mcc.
-- param: by string device  the dimension: device, country, hour, bin_country, merchant, mcc
SELECT value,
       SUM(payments) AS payments,
       SUM(fraud_payments) AS fraud_payments,
       ROUND(100.0 * SUM(fraud_payments) / NULLIF(SUM(payments), 0), 3) AS fraud_rate_pct,
       SUM(fraud_amount_usd) AS fraud_amount_usd,
       ROUND(100.0 * SUM(fraud_amount_usd) / NULLIF(SUM(amount_usd), 0), 3) AS fraud_amount_pct,
       SUM(disputed_payments) AS disputed_payments,
       ROUND(100.0 * SUM(disputed_payments) / NULLIF(SUM(payments), 0), 3) AS dispute_rate_pct
FROM gold.agg_fraud_dimension_daily
WHERE dimension = CASE WHEN :by IN ('device', 'country', 'hour', 'bin_country', 'merchant', 'mcc') THEN :by
                       ELSE RAISE_ERROR(CONCAT('fraud_rates: unknown dimension ', :by,
                                               '; expected device, country, hour, bin_country, merchant or mcc'))
                  END
GROUP BY value
ORDER BY fraud_rate_pct DESC, value
