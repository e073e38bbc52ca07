-- gold.dim_plan from silver: plans with their product and price per month (a yearly price / 12).
SELECT p.plan_id,
       p.name AS plan_name,
       p.billing_interval,
       p.amount,
       p.currency_code,
       CAST(CASE WHEN p.billing_interval = 'year' THEN p.amount / 12 ELSE p.amount END AS DECIMAL(23, 4))
           AS monthly_amount,
       p.active,
       p.product_id,
       pr.name AS product_name,
       pr.category AS product_category,
       pr.merchant_id
FROM silver.plans p
LEFT JOIN silver.products pr ON pr.product_id = p.product_id
