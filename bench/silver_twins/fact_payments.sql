-- gold.fact_payments from silver: the charges (the pack's row-level queries read columns fact_payments
-- takes from silver.charges unchanged: ids, times, status, USD amounts).
SELECT * FROM silver.charges
