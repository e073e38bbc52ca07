-- name: checkout_funnel
-- description: The checkout funnel from the clickstream: sessions and customers reaching each step (landing, product, add to cart, cart, checkout, pay click, payment attempted, payment authorized), conversion from the previous and the first step, and the average cart size (units, from the VARIANT attributes:cart.items) of the sessions at each step; for all sessions or per merchant, device or channel.
-- param: by string none  breakdown: none, merchant, device or channel
-- param: merchant_id bigint -  one merchant, or all when omitted
-- param: start_date date -  first UTC day a session started on (inclusive), or from the beginning
-- param: end_date date -  last UTC day a session started on (inclusive), or to the end
--
-- A session reaches a step when any of its events is at that step or a later one (a later step
-- implies the earlier ones even when one of their events was lost to quarantine). The payment steps
-- come from the session's `session_end` (its `charge_id`) and the charge in gold.fact_payments:
-- attempted = the session led to a charge; authorized = that charge was authorized (status authorized,
-- captured, or canceled after authorization); the attempted-but-not-authorized sessions are the
-- declines. Anonymous sessions count as sessions, not as customers.
WITH steps (step_no, step) AS (
    VALUES (1, 'landing'), (2, 'product'), (3, 'add_to_cart'), (4, 'cart'), (5, 'checkout'), (6, 'pay_click'),
           (7, 'payment_attempted'), (8, 'payment_authorized')
), events AS (
    SELECT session_id, customer_id, merchant_id, device_type, channel, event_time,
           CASE WHEN event_type = 'page_view' AND page_type = 'landing' THEN 1
                WHEN event_type = 'page_view' AND page_type = 'product' THEN 2
                WHEN event_type = 'click' AND element_id = 'add-to-cart' THEN 3
                WHEN event_type = 'page_view' AND page_type = 'cart' THEN 4
                WHEN event_type = 'page_view' AND page_type = 'checkout' THEN 5
                WHEN event_type = 'click' AND element_id = 'pay-button' THEN 6
           END AS step_no,
           -- the cart's items are only in the VARIANT remainder: units = the sum of the items' quantities
           AGGREGATE(TRY_VARIANT_GET(attributes, '$.cart.items', 'ARRAY<VARIANT>'), 0L,
                     (units, item) -> units + item:['quantity']::BIGINT) AS cart_units
    FROM silver.clickstream_events
    WHERE session_id IS NOT NULL
), clicked AS (
    SELECT session_id,
           MIN_BY(customer_id, event_time) AS customer_id,
           MIN_BY(merchant_id, event_time) AS merchant_id,
           MIN_BY(device_type, event_time) AS device_type,
           MIN_BY(channel, event_time) AS channel,
           MIN(event_time) AS first_at,
           MAX(step_no) AS clicked_depth,
           MAX(cart_units) AS cart_units
    FROM events
    GROUP BY session_id
), paid AS (
    SELECT e.session_id,
           MAX(CASE WHEN p.status IN ('authorized', 'captured', 'canceled') THEN 8 ELSE 7 END) AS paid_depth
    FROM silver.session_events e
    LEFT JOIN gold.fact_payments p ON p.charge_id = e.charge_id
    WHERE e.event_type = 'session_end' AND e.charge_id IS NOT NULL
    GROUP BY e.session_id
), sessions AS (
    SELECT CASE :by WHEN 'none' THEN 'all'
                    WHEN 'merchant' THEN CAST(c.merchant_id AS STRING)
                    WHEN 'device' THEN c.device_type
                    WHEN 'channel' THEN c.channel
                    ELSE RAISE_ERROR(CONCAT('checkout_funnel: unknown breakdown ', :by,
                                            '; expected none, merchant, device or channel'))
           END AS segment,
           c.session_id, c.customer_id, c.cart_units,
           GREATEST(c.clicked_depth, COALESCE(p.paid_depth, 0)) AS depth
    FROM clicked c
    LEFT JOIN paid p ON p.session_id = c.session_id
    WHERE (:merchant_id IS NULL OR c.merchant_id = :merchant_id)
      AND (:start_date IS NULL OR CAST(c.first_at AS DATE) >= :start_date)
      AND (:end_date IS NULL OR CAST(c.first_at AS DATE) <= :end_date)
), reached AS (
    SELECT s.segment, t.step_no,
           COUNT(*) AS sessions,
           COUNT(DISTINCT s.customer_id) AS customers,
           CASE WHEN t.step_no >= 3     -- the cart exists from the add-to-cart click on
                THEN ROUND(CAST(SUM(s.cart_units) AS DECIMAL(20, 0)) / NULLIF(COUNT(s.cart_units), 0), 2)
           END AS avg_cart_units
    FROM sessions s
    JOIN steps t ON t.step_no <= s.depth
    GROUP BY s.segment, t.step_no
), grid AS (
    SELECT g.segment, t.step_no, t.step,
           COALESCE(r.sessions, 0) AS sessions,
           COALESCE(r.customers, 0) AS customers,
           r.avg_cart_units
    FROM (SELECT DISTINCT segment FROM sessions) g
    CROSS JOIN steps t
    LEFT JOIN reached r ON r.segment = g.segment AND r.step_no = t.step_no
)
SELECT segment,
       step_no,
       step,
       sessions,
       customers,
       ROUND(100.0 * sessions / NULLIF(LAG(sessions) OVER (PARTITION BY segment ORDER BY step_no), 0), 2)
           AS conversion_pct,
       ROUND(100.0 * sessions / NULLIF(FIRST_VALUE(sessions) OVER (PARTITION BY segment ORDER BY step_no), 0), 2)
           AS overall_pct,
       avg_cart_units
FROM grid
ORDER BY segment, step_no
