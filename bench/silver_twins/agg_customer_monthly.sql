-- gold.agg_customer_monthly from silver: the captured charges of each customer per month (count, captured
-- USD in gold's sum type, first and last day).
SELECT TRUNC(CAST(created_at AS DATE), 'MM') AS month_start,
       customer_id,
       COUNT(*) AS payments,
       CAST(SUM(captured_amount_usd) AS DECIMAL(38, 2)) AS amount_usd,
       MIN(CAST(created_at AS DATE)) AS first_payment_date,
       MAX(CAST(created_at AS DATE)) AS last_payment_date
FROM silver.charges
WHERE status = 'captured' AND customer_id IS NOT NULL
GROUP BY 1, 2
