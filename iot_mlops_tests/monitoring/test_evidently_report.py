"""Evidently beside our fast path: both verdicts from one run, their disagreement, and a bounded HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import connect
from iot_mlops.monitoring.drift import compute_drift
from iot_mlops.monitoring.evidently_report import report_html, run_evidently, save_report, shown_columns
from iot_mlops.monitoring.reference import SAMPLE_FILE, build_reference
from iot_mlops.monitoring.verdicts import compare_verdicts, explanation
from iot_mlops.profiles.monitoring import DriftSpec


def keys(rows: int) -> dict:
    return {"device_id": [f"d{i % 13}" for i in range(rows)], "ts": pd.date_range("2026-01-01", periods=rows, freq="min")}


def drift_pair(tmp_path: Path, reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], spec: DriftSpec):
    """Our result and Evidently's (raw values, as the asset runs it) for one reference/current pair."""
    with connect() as con:
        con.register("reference", reference)
        profile = build_reference(con, "reference", kinds, spec, tmp_path / SAMPLE_FILE)
        con.register("current", current)
        ours = compute_drift(con, "current", profile, None, spec)
    sample = pd.read_parquet(tmp_path / SAMPLE_FILE)
    return ours, run_evidently(current[list(kinds)], sample, profile, spec), profile


def test_both_verdicts_and_their_disagreement(tmp_path: Path):
    rng, rows = np.random.default_rng(0), 3000
    reference = pd.DataFrame({**keys(rows), "x": rng.normal(10, 2, rows), "y": rng.normal(0, 1, rows),
                              "c": np.full(rows, 5.0), "cat": rng.choice(["a", "b"], rows, p=[0.7, 0.3])})
    current = pd.DataFrame({**keys(rows), "x": np.full(rows, np.nan), "y": rng.normal(0, 1, rows),
                            "c": np.full(rows, 6.0), "cat": rng.choice(["a", "b", "new"], rows, p=[0.6, 0.3, 0.1])})
    kinds = {"x": "numeric", "y": "numeric", "c": "numeric", "cat": "categorical"}
    spec = DriftSpec(reference_sample=1000)
    ours, theirs, profile = drift_pair(tmp_path, reference, current, kinds, spec)
    comparison = compare_verdicts(ours, theirs)

    assert (comparison.drifted, comparison.tested, comparison.share) == (len(ours.drifted), 4, ours.share)
    assert sorted(ours.drifted) == ["c", "cat", "x"]  # x has no value today: drifted for us
    # Evidently's own dataset numbers (its DriftedColumnsCount), consistent with its per-column tests;
    # it cannot compare x (empty today), so it tests three features.
    theirs_drifted = {name for name, drifted in theirs.verdicts.items() if drifted}
    assert comparison.evidently_tested == len(theirs.verdicts) == 3
    assert comparison.evidently_drifted == len(theirs_drifted) and theirs_drifted >= {"c", "cat"}
    assert comparison.evidently_share == pytest.approx(len(theirs_drifted) / 3)
    assert comparison.disagree == sorted(set(ours.drifted) ^ theirs_drifted) and "x" in comparison.ours_only
    assert set(comparison.evidently_only) == theirs_drifted - set(ours.drifted)

    text = explanation(comparison, ours, theirs, profile, spec, spec.evidently_rows)
    assert f"{len(ours.drifted)} of 4 features drifted (share {ours.share:.3f})" in text
    assert f"{comparison.evidently_drifted} of 3 (share {comparison.evidently_share:.3f})" in text
    assert f"{profile.bins} quantile bins" in text and f"PSI >= {spec.psi_threshold}" in text and "ours only: `x`" in text


def wide(seed: int, rows: int, columns: int, shifted: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({**keys(rows), **{f"f{i:03d}": rng.normal(1.0 if i < shifted else 0.0, 1.0, rows)
                                          for i in range(columns)}})


def plotted(html: str) -> set[str]:
    """Columns with a row (and plots) in the report's per-column table."""
    return {json.loads(f'"{m}"') for m in re.findall(r'"column_name": "([^"]+)"', html)}


def test_html_of_a_wide_frame_is_bounded_and_plots_the_drifted_columns(tmp_path: Path):
    columns, rows = 110, 1000
    kinds = {f"f{i:03d}": "numeric" for i in range(columns)}
    spec = DriftSpec(reference_sample=rows, evidently_top=3, evidently_max_columns=30)
    ours, theirs, _ = drift_pair(tmp_path, wide(0, rows, columns), wide(1, rows, columns, shifted=12), kinds, spec)
    assert theirs.tested == columns and set(ours.drifted) >= {f"f{i:03d}" for i in range(12)}

    shown = shown_columns(ours, theirs, spec.evidently_top, spec.evidently_max_columns)
    drifted = set(ours.drifted) | {name for name, d in theirs.verdicts.items() if d}
    assert len(shown) == len(drifted) + 3 and set(shown) >= drifted
    html = save_report(theirs, tmp_path / "evidently.html", shown).read_text(encoding="utf-8")
    full = report_html(theirs, list(kinds))
    assert plotted(html) == set(shown) and plotted(full) == set(kinds)
    assert len(html.encode()) < 5_000_000 and len(full.encode()) > 10_000_000
    # The page's counters and tests still cover every column: Evidently's share over all 110.
    assert f"({theirs.drifted_count} out of {columns})" in html

    capped = shown_columns(ours, theirs, top=0, limit=5)
    strongest = sorted(ours.tested, key=lambda f: f.statistic, reverse=True)[:5]
    assert capped == [f.feature for f in strongest]
