-- name: revenue_monthly_growth
-- description: Net revenue in USD per month (all merchants, or one) with month-over-month growth in percent.
-- param: merchant_id bigint -  one merchant (all when omitted)
WITH monthly AS (
    SELECT month_start, SUM(net_usd) AS net_usd, SUM(gross_usd) AS gross_usd, SUM(payments) AS payments
    FROM gold.agg_revenue_monthly
    WHERE :merchant_id IS NULL OR merchant_id = :merchant_id
    GROUP BY month_start
)
SELECT month_start,
       payments,
       gross_usd,
       net_usd,
       LAG(net_usd) OVER (ORDER BY month_start) AS previous_net_usd,
       ROUND(100.0 * (net_usd - LAG(net_usd) OVER (ORDER BY month_start))
             / NULLIF(LAG(net_usd) OVER (ORDER BY month_start), 0), 2) AS growth_pct
FROM monthly
ORDER BY month_start
