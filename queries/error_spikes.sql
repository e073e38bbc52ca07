-- name: error_spikes
-- description: Error spikes around failed payments: ERROR log lines per UTC hour (or per merchant and hour) next to the failed payments of gold.fact_payments, the trailing average of errors, a spike flag when the hour's errors exceed a multiple of that average, and the error types and codes seen.
-- param: per_merchant boolean false  one row per merchant and hour (errors about a merchant's payments) instead of per hour
-- param: multiple decimal 3.0  an hour is a spike when its errors exceed this multiple of the trailing average
-- param: window_hours int 24  the trailing average covers this many hours before the hour (fewer at the start)
-- param: min_errors int 5  hours with fewer errors are never spikes
-- param: spikes_only boolean true  only the spikes, or every hour
-- param: start_date date -  first UTC day shown (inclusive; the average still looks back before it)
-- param: end_date date -  last UTC day shown (inclusive)
--
-- Every hour from the first to the last hour with an ERROR line or a failed payment is on the grid,
-- quiet ones with 0, so that the average counts them. Errors are `silver.app_logs` rows with level
-- ERROR: `card_error` lines are the declines (one per failed payment, `error_code` = its
-- `failure_code`), the others are API errors (timeouts, front-end exceptions) with no merchant, which
-- the per-merchant view leaves out. Failed payments are counted in the hour they were created.
-- `card_testing_declines` are the failed payments labelled as card testing.
WITH errors AS (
    SELECT DATE_TRUNC('HOUR', event_time) AS hour,
           IF(:per_merchant, merchant_id, NULL) AS merchant_id,
           error_type,
           error_code
    FROM silver.app_logs
    WHERE level = 'ERROR' AND (NOT :per_merchant OR merchant_id IS NOT NULL)
), failures AS (
    SELECT DATE_TRUNC('HOUR', created_at) AS hour,
           IF(:per_merchant, merchant_id, NULL) AS merchant_id,
           failure_code,
           fraud_scenario
    FROM gold.fact_payments
    WHERE status = 'failed'
), bounds AS (
    SELECT MIN(hour) AS first_hour, MAX(hour) AS last_hour
    FROM (SELECT hour FROM errors UNION ALL SELECT hour FROM failures)
), hours AS (
    SELECT EXPLODE(SEQUENCE(first_hour, last_hour, INTERVAL 1 HOUR)) AS hour
    FROM bounds
), keys AS (
    SELECT merchant_id FROM errors
    UNION
    SELECT merchant_id FROM failures
), error_hours AS (
    SELECT hour, merchant_id,
           COUNT(*) AS errors,
           COUNT_IF(error_type = 'card_error') AS card_errors,
           ARRAY_SORT(COLLECT_SET(CONCAT(error_type, ':', error_code))) AS error_codes
    FROM errors
    GROUP BY hour, merchant_id
), failure_hours AS (
    SELECT hour, merchant_id,
           COUNT(*) AS failed_payments,
           COUNT_IF(fraud_scenario = 'card_testing') AS card_testing_declines,
           ARRAY_SORT(COLLECT_SET(failure_code)) AS failure_codes
    FROM failures
    GROUP BY hour, merchant_id
), grid AS (
    SELECT h.hour, k.merchant_id,
           COALESCE(e.errors, 0) AS errors,
           COALESCE(e.card_errors, 0) AS card_errors,
           COALESCE(f.failed_payments, 0) AS failed_payments,
           COALESCE(f.card_testing_declines, 0) AS card_testing_declines,
           COALESCE(e.error_codes, ARRAY()) AS error_codes,
           COALESCE(f.failure_codes, ARRAY()) AS failure_codes
    FROM hours h
    CROSS JOIN keys k
    LEFT JOIN error_hours e ON e.hour = h.hour AND e.merchant_id <=> k.merchant_id
    LEFT JOIN failure_hours f ON f.hour = h.hour AND f.merchant_id <=> k.merchant_id
), trailing AS (
    SELECT *,
           SUM(errors) OVER before AS before_errors,
           COUNT(*) OVER before AS before_hours
    FROM grid
    WINDOW before AS (PARTITION BY merchant_id ORDER BY hour ROWS BETWEEN :window_hours PRECEDING AND 1 PRECEDING)
), flagged AS (
    SELECT *,
           -- errors > multiple * (before_errors / before_hours), without dividing
           COALESCE(errors >= :min_errors AND errors * before_hours > :multiple * before_errors, FALSE) AS is_spike
    FROM trailing
)
SELECT hour,
       merchant_id,
       errors,
       card_errors,
       errors - card_errors AS other_errors,
       failed_payments,
       card_testing_declines,
       ROUND(CAST(before_errors AS DECIMAL(20, 0)) / NULLIF(before_hours, 0), 2) AS trailing_avg_errors,
       ROUND(CAST(errors AS DECIMAL(20, 0)) * before_hours / NULLIF(before_errors, 0), 2) AS errors_vs_avg,
       is_spike,
       error_codes,
       failure_codes
FROM flagged
WHERE (NOT :spikes_only OR is_spike)
  AND (:start_date IS NULL OR CAST(hour AS DATE) >= :start_date)
  AND (:end_date IS NULL OR CAST(hour AS DATE) <= :end_date)
ORDER BY hour, merchant_id
