-- gold.agg_plan_monthly from silver: per month (from the first subscription event's to the last one's)
-- and plan, subscriptions active at the start and end, new and churned ones, MRR in USD of those active
-- at the end (the monthly price at the month's last FX rate, rounded to cents, times the subscriptions),
-- and the invoices paid.
WITH events AS (
    SELECT created_at AS t FROM silver.subscriptions
    UNION ALL SELECT canceled_at FROM silver.subscriptions
    UNION ALL SELECT paid_at FROM silver.invoices
), months AS (
    SELECT EXPLODE(SEQUENCE(first_month, last_month, INTERVAL 1 MONTH)) AS month_start
    FROM (SELECT TRUNC(MIN(t), 'MM') AS first_month, TRUNC(MAX(t), 'MM') AS last_month FROM events) AS bounds
    WHERE first_month IS NOT NULL
), counts AS (
    SELECT m.month_start,
           s.plan_id,
           COUNT_IF(s.created_at < CAST(m.month_start AS TIMESTAMP)
                    AND (s.canceled_at IS NULL OR s.canceled_at >= CAST(m.month_start AS TIMESTAMP))) AS active_start,
           COUNT_IF(s.created_at >= CAST(m.month_start AS TIMESTAMP)
                    AND s.created_at < CAST(ADD_MONTHS(m.month_start, 1) AS TIMESTAMP)) AS new_subscriptions,
           COUNT_IF(s.canceled_at >= CAST(m.month_start AS TIMESTAMP)
                    AND s.canceled_at < CAST(ADD_MONTHS(m.month_start, 1) AS TIMESTAMP)) AS churned,
           COUNT_IF(s.created_at < CAST(ADD_MONTHS(m.month_start, 1) AS TIMESTAMP)
                    AND (s.canceled_at IS NULL
                         OR s.canceled_at >= CAST(ADD_MONTHS(m.month_start, 1) AS TIMESTAMP))) AS active_end
    FROM silver.subscriptions s
    CROSS JOIN months m
    GROUP BY m.month_start, s.plan_id
), paid AS (
    SELECT TRUNC(i.paid_at, 'MM') AS month_start, s.plan_id, COUNT(*) AS invoices_paid,
           CAST(SUM(i.amount_usd) AS DECIMAL(38, 2)) AS invoiced_usd
    FROM silver.invoices i
    JOIN silver.subscriptions s ON s.subscription_id = i.subscription_id
    WHERE i.status = 'paid'
    GROUP BY TRUNC(i.paid_at, 'MM'), s.plan_id
), month_end_rate AS (
    SELECT month_start, currency_code, usd_per_unit
    FROM (SELECT TRUNC(rate_date, 'MM') AS month_start, currency_code, usd_per_unit,
                 ROW_NUMBER() OVER (PARTITION BY currency_code, TRUNC(rate_date, 'MM') ORDER BY rate_date DESC) AS n
          FROM silver.ref_fx_rates) AS rates
    WHERE n = 1
)
SELECT c.month_start,
       c.plan_id,
       p.merchant_id,
       c.active_start,
       c.new_subscriptions,
       c.churned,
       c.active_end,
       CAST(CAST(c.active_end AS DECIMAL(20, 0))
            * ROUND(CAST(p.monthly_amount AS DECIMAL(23, 4)) * CAST(r.usd_per_unit AS DECIMAL(14, 10)), 2)
            AS DECIMAL(38, 2)) AS mrr_usd,
       COALESCE(pd.invoices_paid, 0) AS invoices_paid,
       COALESCE(pd.invoiced_usd, CAST(0 AS DECIMAL(38, 2))) AS invoiced_usd
FROM counts c
LEFT JOIN paid pd ON pd.month_start = c.month_start AND pd.plan_id = c.plan_id
LEFT JOIN gold.dim_plan p ON p.plan_id = c.plan_id
LEFT JOIN month_end_rate r ON r.month_start = c.month_start AND r.currency_code = p.currency_code
