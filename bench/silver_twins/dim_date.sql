-- gold.dim_date from silver: every day from the first to the last day of any fact (payments, refunds,
-- disputes opened, ledger entries, subscription events: started, canceled, paid invoices).
SELECT EXPLODE(SEQUENCE(first_day, last_day)) AS date
FROM (
    SELECT MIN(day) AS first_day, MAX(day) AS last_day
    FROM (
        SELECT CAST(created_at AS DATE) AS day FROM silver.charges
        UNION ALL SELECT CAST(created_at AS DATE) FROM silver.refunds
        UNION ALL SELECT CAST(opened_at AS DATE) FROM silver.disputes
        UNION ALL SELECT CAST(created_at AS DATE) FROM silver.balance_transactions
        UNION ALL SELECT CAST(created_at AS DATE) FROM silver.subscriptions
        UNION ALL SELECT CAST(canceled_at AS DATE) FROM silver.subscriptions
        UNION ALL SELECT CAST(i.paid_at AS DATE)
                  FROM silver.invoices i JOIN silver.subscriptions s ON s.subscription_id = i.subscription_id
                  WHERE i.status = 'paid'
    ) AS days
) AS bounds
WHERE first_day IS NOT NULL
