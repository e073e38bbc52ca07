-- name: net_revenue_usd
-- description: Net revenue in USD per merchant after refunds, disputes and fees over a period, with the net in each original currency.
-- param: start_date date 1900-01-01  first day (inclusive)
-- param: end_date date 9999-12-31  last day (inclusive)
SELECT merchant_id,
       currency_code,
       SUM(payments) AS payments,
       SUM(gross_usd) AS gross_usd,
       SUM(refunds_usd) AS refunds_usd,
       SUM(disputes_usd) AS disputes_usd,
       SUM(fees_usd) AS fees_usd,
       SUM(net_usd) AS net_usd,
       SUM(net) AS net
FROM gold.agg_revenue_daily
WHERE date BETWEEN :start_date AND :end_date
GROUP BY merchant_id, currency_code
ORDER BY merchant_id, currency_code
