"""Drift thresholds from the reference itself: how far one healthy day of it strays from the rest.

A day of a large, autocorrelated fleet differs from the whole reference by more than sampling noise
(same devices all day, weather, shifts); a fixed PSI or p-value threshold then flags healthy days.
Each feature's statistic over the reference's day-blocks gives its null distribution; a day is drifted
only beyond the calibration quantile of it (and beyond the fixed threshold).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from iot_mlops.monitoring.stattests import chi_square, psi

MIN_BLOCKS = 3  # fewer days than this say nothing about a day's spread: keep the fixed threshold


def null_statistics(kind: str, total: list[int], categories: list[str], blocks: list) -> list[float]:
    """PSI (numeric) or chi-square statistic (categorical) of each block against the rest of the reference."""
    found = []
    for counts in blocks:
        if counts is None:
            continue
        if kind == "numeric":
            rest = [t - c for t, c in zip(total, counts, strict=True)]
            if sum(counts) and sum(rest):
                found.append(psi(rest, counts))
        else:
            rest = {c: t - counts.get(c, 0) for c, t in zip(categories, total, strict=True)}
            if sum(counts.values()) and sum(rest.values()):
                found.append(chi_square(rest, counts)[0])
    return [s for s in found if math.isfinite(s)]


def calibrate(features: list, blocks: dict[str, list], quantile: float) -> list:
    """Each feature with its null threshold: the `quantile` of its block statistics (None with too few blocks)."""
    calibrated = []
    for feature in features:
        binned = feature.kind == "categorical" or feature.edges
        found = null_statistics(feature.kind, feature.counts, feature.categories, blocks.get(feature.name, [])) if binned else []
        threshold = float(np.quantile(found, quantile)) if len(found) >= MIN_BLOCKS else None
        calibrated.append(replace(feature, null_threshold=threshold))
    return calibrated
