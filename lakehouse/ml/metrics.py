"""Model evaluation (pure): ranking metrics, the cost-chosen threshold, card precision@k per day, PSI.

`expected_cost` prices each missed fraud at `cost_missed` and each declined genuine payment at
`cost_decline`; `cost_threshold` picks the score threshold that minimizes it (on validation data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class Evaluation:
    payments: int
    frauds: int
    roc_auc: float
    average_precision: float
    threshold: float
    precision: float
    recall: float
    declined: int
    expected_cost: float
    cost_per_payment: float
    card_precision_at_100: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def expected_cost(labels: np.ndarray, scores: np.ndarray, threshold: float, cost_missed: float,
                  cost_decline: float) -> float:
    """Missed frauds (score < threshold) x cost_missed + declined genuine payments x cost_decline."""
    declined = scores >= threshold
    return float(np.sum(labels & ~declined) * cost_missed + np.sum(~labels & declined) * cost_decline)


def cost_threshold(labels: np.ndarray, scores: np.ndarray, cost_missed: float, cost_decline: float) -> float:
    """The threshold (one of the scores, or above them all) with the lowest expected cost; ties: the
    highest threshold (fewest declines)."""
    labels = labels.astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # Declining the top i payments: cost = (frauds not in top i) x missed + (genuine in top i) x decline.
    frauds_in_top = np.concatenate([[0], np.cumsum(y)])
    genuine_in_top = np.concatenate([[0], np.cumsum(~y)])
    costs = (y.sum() - frauds_in_top) * cost_missed + genuine_in_top * cost_decline
    # Only cut between distinct scores (a threshold declines all ties together).
    valid = np.concatenate([[True], np.append(s[1:] != s[:-1], True)])
    costs = np.where(valid, costs, np.inf)
    best = int(np.argmin(costs))
    if best == 0:
        return float(np.nextafter(s[0], np.inf)) if len(s) else 1.0
    return float(s[best - 1])


def card_precision_at_k(days: Sequence[object], cards: Sequence[int], labels: Sequence[bool], scores: Sequence[float],
                        k: int = 100) -> float:
    """Per day: the k cards with the highest score of the day; the share of them that had a fraud that
    day; averaged over days (the fraud team's daily review capacity)."""
    frame = pd.DataFrame({"day": list(days), "card": list(cards), "fraud": list(labels), "score": list(scores)})
    if frame.empty:
        return float("nan")
    per_card = frame.groupby(["day", "card"], as_index=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    per_day = [g.sort_values(["score", "card"], ascending=[False, True]).head(k)["fraud"].mean()
               for _, g in per_card.groupby("day")]
    return float(np.mean(per_day))


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float, cost_missed: float, cost_decline: float,
             days: Sequence[object], cards: Sequence[int]) -> Evaluation:
    y = labels.astype(bool)
    declined = scores >= threshold
    both = len(set(y.tolist())) == 2
    tp = int(np.sum(y & declined))
    cost = expected_cost(y, scores, threshold, cost_missed, cost_decline)
    return Evaluation(
        payments=len(y), frauds=int(y.sum()),
        roc_auc=float(roc_auc_score(y, scores)) if both else float("nan"),
        average_precision=float(average_precision_score(y, scores)) if both else float("nan"),
        threshold=float(threshold), precision=tp / int(declined.sum()) if declined.any() else 0.0,
        recall=tp / int(y.sum()) if y.any() else 0.0, declined=int(declined.sum()), expected_cost=cost,
        cost_per_payment=cost / len(y) if len(y) else float("nan"),
        card_precision_at_100=card_precision_at_k(days, cards, y.tolist(), scores.tolist(), 100))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, over `expected`'s quantile bins (NaN
    is a bin of its own); 0 = same distribution, > 0.2 is commonly read as a shift."""
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    finite = expected[~np.isnan(expected)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1))) if finite.size else np.array([0.0])
    inner = edges[1:-1]

    def shares(values: np.ndarray) -> np.ndarray:
        nan = np.isnan(values)
        counts = np.bincount(np.searchsorted(inner, values[~nan], side="right"), minlength=len(inner) + 1)
        total = np.append(counts, nan.sum()).astype(float)
        return np.clip(total / max(len(values), 1), 1e-4, None)

    e, a = shares(expected), shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))
