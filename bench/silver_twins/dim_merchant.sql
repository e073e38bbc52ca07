-- gold.dim_merchant from silver: the merchants' versions (SCD2: `is_current` marks the live one).
SELECT * FROM silver.merchants WHERE NOT _is_deleted
