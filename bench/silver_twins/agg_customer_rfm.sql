-- gold.agg_customer_rfm from silver: RFM of the captured charges per customer as of the last day with
-- one, quintile scores (ties broken by customer_id, as gold does) and the segment they give.
WITH per_customer AS (
    SELECT customer_id,
           MAX(CAST(created_at AS DATE)) AS last_payment_date,
           COUNT(*) AS frequency,
           CAST(SUM(captured_amount_usd) AS DECIMAL(38, 2)) AS monetary_usd
    FROM silver.charges
    WHERE status = 'captured' AND customer_id IS NOT NULL
    GROUP BY customer_id
), scored AS (
    SELECT *, DATEDIFF(MAX(last_payment_date) OVER (), last_payment_date) AS recency_days
    FROM per_customer
), ranked AS (
    SELECT *,
           NTILE(5) OVER (ORDER BY recency_days DESC, customer_id) AS r_score,
           NTILE(5) OVER (ORDER BY frequency, customer_id) AS f_score
    FROM scored
)
SELECT *,
       CASE WHEN r_score >= 4 AND f_score >= 4 THEN 'champions'
            WHEN r_score >= 3 AND f_score >= 3 THEN 'loyal'
            WHEN r_score >= 4 AND f_score <= 2 THEN 'new'
            WHEN r_score <= 2 AND f_score >= 3 THEN 'at_risk'
            WHEN r_score <= 2 AND f_score <= 2 THEN 'hibernating'
            ELSE 'needs_attention'
       END AS segment
FROM ranked
