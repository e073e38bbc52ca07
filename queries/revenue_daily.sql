-- name: revenue_daily
-- description: Revenue per day and merchant in USD: gross (charges), refunds, disputes (net of disputes won), fees and net, from the ledger.
-- param: start_date date 1900-01-01  first day (inclusive)
-- param: end_date date 9999-12-31  last day (inclusive)
-- param: merchant_id bigint -  one merchant (all when omitted)
SELECT r.date,
       r.merchant_id,
       m.name AS merchant,
       SUM(r.payments) AS payments,
       SUM(r.gross_usd) AS gross_usd,
       SUM(r.refunds_usd) AS refunds_usd,
       SUM(r.disputes_usd) AS disputes_usd,
       SUM(r.fees_usd) AS fees_usd,
       SUM(r.net_usd) AS net_usd
FROM gold.agg_revenue_daily r
JOIN gold.dim_merchant m ON m.merchant_id = r.merchant_id AND m.is_current
WHERE r.date BETWEEN :start_date AND :end_date
  AND (:merchant_id IS NULL OR r.merchant_id = :merchant_id)
GROUP BY r.date, r.merchant_id, m.name
ORDER BY r.date, r.merchant_id
