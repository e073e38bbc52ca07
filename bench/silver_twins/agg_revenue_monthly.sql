-- gold.agg_revenue_monthly from silver: the daily twin rolled up to months, as gold rolls its daily table up.
SELECT TRUNC(date, 'MM') AS month_start,
       merchant_id,
       currency_code,
       SUM(payments) AS payments,
       SUM(gross_usd) AS gross_usd,
       SUM(refunds_usd) AS refunds_usd,
       SUM(disputes_usd) AS disputes_usd,
       SUM(fees_usd) AS fees_usd,
       SUM(net_usd) AS net_usd,
       SUM(net) AS net
FROM gold.agg_revenue_daily
GROUP BY TRUNC(date, 'MM'), merchant_id, currency_code
