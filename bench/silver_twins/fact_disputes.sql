-- gold.fact_disputes from silver: the disputes with their payment's merchant.
SELECT d.*, c.merchant_id
FROM silver.disputes d
LEFT JOIN silver.charges c ON c.charge_id = d.charge_id
