-- name: subscription_mrr_churn
-- description: Subscriptions per month over all plans: active at the start and end, new, churned, churn rate (churned / active at the start) and MRR in USD.
SELECT month_start,
       SUM(active_start) AS active_start,
       SUM(new_subscriptions) AS new_subscriptions,
       SUM(churned) AS churned,
       SUM(active_end) AS active_end,
       ROUND(100.0 * SUM(churned) / NULLIF(SUM(active_start), 0), 2) AS churn_rate_pct,
       SUM(mrr_usd) AS mrr_usd
FROM gold.agg_plan_monthly
GROUP BY month_start
ORDER BY month_start
