-- name: cohort_retention
-- description: Customer cohort retention: customers by the month of their first captured payment, and the share of each cohort paying again 0, 1, 2 ... months later.
WITH active AS (
    SELECT customer_id, month_start FROM gold.agg_customer_monthly
), cohorts AS (
    SELECT customer_id, MIN(month_start) AS cohort_month FROM active GROUP BY customer_id
), sizes AS (
    SELECT cohort_month, COUNT(*) AS cohort_size FROM cohorts GROUP BY cohort_month
)
SELECT c.cohort_month,
       CAST(MONTHS_BETWEEN(a.month_start, c.cohort_month) AS INT) AS months_since,
       s.cohort_size,
       COUNT(*) AS active_customers,
       ROUND(100.0 * COUNT(*) / s.cohort_size, 2) AS retention_pct
FROM cohorts c
JOIN active a ON a.customer_id = c.customer_id
JOIN sizes s ON s.cohort_month = c.cohort_month
GROUP BY c.cohort_month, a.month_start, s.cohort_size
ORDER BY c.cohort_month, months_since
