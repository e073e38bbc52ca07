-- name: card_testing
-- description: The card-testing pattern: bursts of small payments by one customer at one merchant, each within a gap of minutes of the previous one, many declined. One row per burst, with its payments.
-- param: max_amount_usd decimal 5.00  a payment at or under this many USD counts as small (at most 10: gold.agg_small_payments holds the payments up to 10 USD)
-- param: gap_minutes int 10  a longer pause between two small payments starts a new burst
-- param: min_attempts int 5  bursts with fewer small payments are not shown
WITH small AS (
    SELECT charge_id, customer_id, merchant_id, created_at, status, amount_usd,
           LAG(created_at) OVER (PARTITION BY customer_id, merchant_id ORDER BY created_at, charge_id) AS previous_at
    FROM gold.agg_small_payments
    WHERE amount_usd <= CASE WHEN :max_amount_usd <= 10 THEN :max_amount_usd
                             ELSE RAISE_ERROR(CONCAT('card_testing: max_amount_usd ', :max_amount_usd,
                                                     ' is over 10, the largest payment gold.agg_small_payments holds'))
                        END
), numbered AS (
    SELECT *, SUM(CASE WHEN previous_at IS NULL
                            OR created_at > previous_at + MAKE_DT_INTERVAL(0, 0, :gap_minutes) THEN 1 ELSE 0 END)
                  OVER (PARTITION BY customer_id, merchant_id ORDER BY created_at, charge_id) AS burst
    FROM small
)
SELECT customer_id,
       merchant_id,
       MIN(created_at) AS first_at,
       MAX(created_at) AS last_at,
       COUNT(*) AS attempts,
       COUNT_IF(status = 'failed') AS declined,
       SUM(amount_usd) AS amount_usd,
       ARRAY_SORT(COLLECT_LIST(charge_id)) AS charge_ids
FROM numbered
GROUP BY customer_id, merchant_id, burst
HAVING COUNT(*) >= :min_attempts
ORDER BY first_at, customer_id
