"""The auto-route threshold: the confidence above which a case is routed without a supervisor."""

from __future__ import annotations

import numpy as np

NEVER = 1.01
"""A threshold no probability reaches: the router never routes on its own."""

THRESHOLD_Z = 0.5
"""The auto-route threshold is where the Wilson lower bound of the out-of-fold precision, this
many standard errors below it, reaches the target: a held-back precision lands at the target
or above it rather than half the time below."""


def choose_threshold(
    confidences: np.ndarray, correct: np.ndarray, target_precision: float, *, z: float = 0.0
) -> float:
    """Lowest confidence at which the predictions at or above it reach the target precision.

    With ``z`` > 0 it is the precision's Wilson lower bound (``z`` standard errors) that must
    reach the target, so a threshold chosen on a few hundred cases errs on the safe side.
    Returns ``NEVER`` when no threshold reaches it.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if len(confidences) == 0:
        return NEVER
    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    n = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / n
    if z > 0:
        spread = z * np.sqrt(precision * (1 - precision) / n + z * z / (4 * n * n))
        precision = (precision + z * z / (2 * n) - spread) / (1 + z * z / n)
    # A threshold keeps every prediction with an equal confidence: only the last of a run of
    # equal values is a possible cut.
    cut = np.ones(len(order), dtype=bool)
    cut[:-1] = sorted_conf[:-1] != sorted_conf[1:]
    good = np.flatnonzero(cut & (precision >= target_precision - 1e-12))
    if len(good) == 0:
        return NEVER
    return float(sorted_conf[good.max()])
