-- name: dispute_ratio
-- description: Disputes per merchant and month against the card networks' 1 % monitoring threshold (disputes opened in the month / captured payments in the month).
-- param: threshold_pct double 1.0  the networks' threshold in percent
WITH payments AS (
    SELECT merchant_id, TRUNC(CAST(created_at AS DATE), 'MM') AS month_start, COUNT(*) AS captured
    FROM gold.fact_payments
    WHERE status = 'captured'
    GROUP BY 1, 2
), disputes AS (
    SELECT merchant_id, TRUNC(CAST(opened_at AS DATE), 'MM') AS month_start, COUNT(*) AS disputes,
           SUM(amount_usd) AS disputed_usd
    FROM gold.fact_disputes
    GROUP BY 1, 2
)
SELECT COALESCE(p.merchant_id, d.merchant_id) AS merchant_id,
       COALESCE(p.month_start, d.month_start) AS month_start,
       COALESCE(p.captured, 0) AS captured_payments,
       COALESCE(d.disputes, 0) AS disputes,
       COALESCE(d.disputed_usd, 0) AS disputed_usd,
       ROUND(100.0 * COALESCE(d.disputes, 0) / NULLIF(p.captured, 0), 3) AS dispute_ratio_pct,
       COALESCE(100 * COALESCE(d.disputes, 0) / NULLIF(p.captured, 0) > :threshold_pct, d.disputes > 0)
           AS over_threshold
FROM payments p
FULL OUTER JOIN disputes d ON d.merchant_id = p.merchant_id AND d.month_start = p.month_start
ORDER BY merchant_id, month_start
