-- name: feedback_themes
-- description: Customer feedback themes per merchant: counts per theme (the support topic, the survey, or a plain review), ratings 1-5, average rating, share of negative feedback, and how many of the payments it is about were refunded or disputed (gold.fact_payments); a `(all)` row per merchant sums its themes.
-- param: merchant_id bigint -  one merchant, or all when omitted
-- param: start_date date -  first UTC day of feedback (inclusive), or from the beginning
-- param: end_date date -  last UTC day of feedback (inclusive), or to the end
-- param: negative_max_rating int 2  a rating at or under this is negative
--
-- Themes: the `topic` when there is one (`refund`, `payment_failed`, `unrecognized`: support messages,
-- and reviews left after a refund), else `survey:<survey id>` for survey answers, else `review`.
-- Negative: a rating at or under `negative_max_rating`, or an unrated support message (every one is a
-- complaint). `rating_counts` is [ones, twos, threes, fours, fives]. Every field of the feedback events
-- is a typed column of silver.feedback (its VARIANT `attributes` is empty: nothing is left over).
WITH feedback AS (
    SELECT f.merchant_id,
           COALESCE(f.topic, CONCAT('survey:', f.survey_id), f.kind) AS theme,
           f.rating,
           f.charge_id,
           f.rating <= :negative_max_rating OR (f.rating IS NULL AND f.kind = 'free_text') AS negative,
           p.refunded_amount > 0 AS refunded,
           p.disputed
    FROM silver.feedback f
    LEFT JOIN gold.fact_payments p ON p.charge_id = f.charge_id
    WHERE (:merchant_id IS NULL OR f.merchant_id = :merchant_id)
      AND (:start_date IS NULL OR f.event_date >= :start_date)
      AND (:end_date IS NULL OR f.event_date <= :end_date)
), themes AS (
    SELECT merchant_id,
           COALESCE(theme, '(all)') AS theme,
           GROUPING(theme) AS is_total,
           COUNT(*) AS feedback,
           COUNT(rating) AS rated,
           ARRAY(COUNT_IF(rating = 1), COUNT_IF(rating = 2), COUNT_IF(rating = 3), COUNT_IF(rating = 4),
                 COUNT_IF(rating = 5)) AS rating_counts,
           ROUND(CAST(SUM(rating) AS DECIMAL(20, 0)) / NULLIF(COUNT(rating), 0), 2) AS avg_rating,
           COUNT_IF(negative) AS negative,
           ROUND(100.0 * COUNT_IF(negative) / COUNT(*), 2) AS negative_pct,
           COUNT(DISTINCT charge_id) AS charges,
           COUNT(DISTINCT IF(refunded, charge_id, NULL)) AS refunded_charges,
           COUNT(DISTINCT IF(disputed, charge_id, NULL)) AS disputed_charges
    FROM feedback
    GROUP BY GROUPING SETS ((merchant_id, theme), (merchant_id))
)
SELECT t.merchant_id,
       m.name AS merchant_name,
       t.theme,
       t.feedback,
       t.rated,
       t.rating_counts,
       t.avg_rating,
       t.negative,
       t.negative_pct,
       t.charges,
       t.refunded_charges,
       t.disputed_charges
FROM themes t
LEFT JOIN gold.dim_merchant m ON m.merchant_id = t.merchant_id AND m.is_current
ORDER BY t.merchant_id, t.is_total DESC, t.theme
