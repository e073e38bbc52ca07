-- name: product_performance
-- description: Products and their plans in one month: active subscriptions at the month's end, new and churned ones, MRR in USD and invoices paid.
-- param: month date required  any day of the month
SELECT p.product_id,
       p.product_name,
       p.product_category,
       p.merchant_id,
       COUNT(DISTINCT p.plan_id) AS plans,
       SUM(a.active_end) AS active_subscriptions,
       SUM(a.new_subscriptions) AS new_subscriptions,
       SUM(a.churned) AS churned,
       SUM(a.mrr_usd) AS mrr_usd,
       SUM(a.invoices_paid) AS invoices_paid,
       SUM(a.invoiced_usd) AS invoiced_usd
FROM gold.agg_plan_monthly a
JOIN gold.dim_plan p ON p.plan_id = a.plan_id
WHERE a.month_start = TRUNC(:month, 'MM')
GROUP BY p.product_id, p.product_name, p.product_category, p.merchant_id
ORDER BY mrr_usd DESC, p.product_id
