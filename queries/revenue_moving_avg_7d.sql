-- name: revenue_moving_avg_7d
-- description: Net revenue in USD per calendar day (days without revenue count as 0) and its trailing 7-day moving average.
-- param: start_date date 1900-01-01  first day (inclusive)
-- param: end_date date 9999-12-31  last day (inclusive)
WITH daily AS (
    SELECT d.date, COALESCE(SUM(r.net_usd), 0) AS net_usd
    FROM gold.dim_date d
    LEFT JOIN gold.agg_revenue_daily r ON r.date = d.date
    GROUP BY d.date
)
SELECT date,
       net_usd,
       CAST(AVG(net_usd) OVER (ORDER BY date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS DECIMAL(38, 2))
           AS net_usd_avg_7d
FROM daily
WHERE date BETWEEN :start_date AND :end_date
ORDER BY date
