-- name: top_merchants
-- description: Merchants ranked by net revenue in USD over a period, with their share of the total and gross, refunds and disputes.
-- param: start_date date 1900-01-01  first day (inclusive)
-- param: end_date date 9999-12-31  last day (inclusive)
-- param: top int 10  how many merchants
WITH per_merchant AS (
    SELECT merchant_id, SUM(gross_usd) AS gross_usd, SUM(refunds_usd) AS refunds_usd,
           SUM(disputes_usd) AS disputes_usd, SUM(net_usd) AS net_usd
    FROM gold.agg_revenue_daily
    WHERE date BETWEEN :start_date AND :end_date
    GROUP BY merchant_id
), ranked AS (
    SELECT p.*, RANK() OVER (ORDER BY p.net_usd DESC) AS rank,
           ROUND(100.0 * p.net_usd / NULLIF(SUM(p.net_usd) OVER (), 0), 2) AS share_pct
    FROM per_merchant p
)
SELECT r.rank, r.merchant_id, m.name AS merchant, m.mcc, m.country_code, r.gross_usd, r.refunds_usd,
       r.disputes_usd, r.net_usd, r.share_pct
FROM ranked r
JOIN gold.dim_merchant m ON m.merchant_id = r.merchant_id AND m.is_current
WHERE r.rank <= :top
ORDER BY r.rank, r.merchant_id
