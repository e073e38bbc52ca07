-- name: customer_segments
-- description: Customer segmentation by RFM (recency, frequency, monetary value of captured payments): customers, their average recency, payments and spend in USD per segment.
SELECT segment,
       COUNT(*) AS customers,
       ROUND(AVG(recency_days), 1) AS avg_recency_days,
       ROUND(AVG(frequency), 2) AS avg_payments,
       SUM(monetary_usd) AS spend_usd,
       ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 2) AS share_pct
FROM gold.agg_customer_rfm
GROUP BY segment
ORDER BY spend_usd DESC, segment
