-- name: compliance_report
-- description: Data quality per silver table over a period: expectation runs, failed runs, rows checked, unexpected rows and rows quarantined.
-- param: start_date date 1900-01-01  first day (inclusive)
-- param: end_date date 9999-12-31  last day (inclusive)
SELECT table,
       SUM(checks) AS checks,
       SUM(failed_checks) AS failed_checks,
       SUM(rows_checked) AS rows_checked,
       SUM(unexpected_rows) AS unexpected_rows,
       SUM(quarantined_rows) AS quarantined_rows
FROM gold.agg_compliance_daily
WHERE date BETWEEN :start_date AND :end_date
GROUP BY table
ORDER BY quarantined_rows DESC, failed_checks DESC, table
