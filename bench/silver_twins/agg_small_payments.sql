-- gold.agg_small_payments from silver: the charges of at most 10 USD (the columns card_testing reads).
SELECT CAST(created_at AS DATE) AS date,
       charge_id,
       created_at,
       customer_id,
       merchant_id,
       status,
       amount_usd
FROM silver.charges
WHERE amount_usd <= 10
