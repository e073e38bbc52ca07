-- gold.agg_revenue_daily from silver: the ledger (silver.balance_transactions) per UTC day, merchant and
-- currency. Gold's grain also has the merchant's country and the payment method kind, which take joins
-- with merchant versions and 10 M charges; the pack's queries sum over both, so the twin leaves them out.
-- The sums have gold's types (DECIMAL(38,2) / (38,4)), so that the queries' arithmetic on them is the same.
SELECT CAST(created_at AS DATE) AS date,
       merchant_id,
       currency_code,
       COUNT_IF(kind = 'charge') AS payments,
       CAST(COALESCE(SUM(CASE WHEN kind = 'charge' THEN amount_usd END), 0) AS DECIMAL(38, 2)) AS gross_usd,
       CAST(COALESCE(SUM(CASE WHEN kind = 'refund' THEN -amount_usd END), 0) AS DECIMAL(38, 2)) AS refunds_usd,
       CAST(COALESCE(SUM(CASE WHEN kind IN ('dispute', 'dispute_won') THEN -amount_usd END), 0)
            AS DECIMAL(38, 2)) AS disputes_usd,
       CAST(SUM(fee_usd) AS DECIMAL(38, 2)) AS fees_usd,
       CAST(SUM(net_usd) AS DECIMAL(38, 2)) AS net_usd,
       CAST(SUM(net) AS DECIMAL(38, 4)) AS net
FROM silver.balance_transactions
GROUP BY CAST(created_at AS DATE), merchant_id, currency_code
