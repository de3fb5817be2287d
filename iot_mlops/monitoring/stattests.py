"""PSI and chi-square as Evidently computes them (legacy/calculations/stattests), on bin or category counts."""

from __future__ import annotations

import numpy as np


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares, zeros filled the way Evidently's get_binned_data does (so PSI stays finite)."""
    share = counts / counts.sum()
    smallest = share[share > 0].min()
    share[share == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return share


def psi(reference: list[int], current: list[int]) -> float:
    """Population stability index of current bin counts against reference bin counts (both non-empty)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    seen = (ref > 0) | (cur > 0)  # like Evidently's keys: only bins holding a value on either side
    ref, cur = shares(ref[seen]), shares(cur[seen])
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def chi_square(reference: dict[str, int], current: dict[str, int]) -> tuple[float, float]:
    """Chi-square of the current category counts against the reference's scaled to the current total: (stat, p)."""
    from scipy import stats  # 1 s to import: only drift runs need it, not every definitions load

    keys = sorted(set(reference) | set(current))
    if len(keys) < 2:  # one category on both sides: nothing can differ (scipy would return NaN)
        return 0.0, 1.0
    observed = np.array([current.get(k, 0) for k in keys], dtype=float)
    expected = np.array([reference.get(k, 0) for k in keys], dtype=float) * observed.sum() / sum(reference.values())
    with np.errstate(divide="ignore", invalid="ignore"):  # a new category: expected 0, statistic inf, p 0
        result = stats.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)
