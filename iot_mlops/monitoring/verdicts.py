"""Our drift verdict beside Evidently's for the same day: both numbers, where they differ, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from iot_mlops.monitoring.drift import DriftResult
from iot_mlops.monitoring.evidently_report import EvidentlyResult
from iot_mlops.monitoring.reference import ReferenceProfile
from iot_mlops.profiles.monitoring import DriftSpec

SHOWN = 10  # disagreeing features named in the metadata


@dataclass(frozen=True)
class VerdictComparison:
    drifted: int
    tested: int
    share: float
    evidently_drifted: int
    evidently_tested: int
    evidently_share: float
    ours_only: list[str]  # drifted for us, not for Evidently (sorted)
    evidently_only: list[str]

    @property
    def disagree(self) -> list[str]:
        """Features drifted for exactly one of the two."""
        return sorted(self.ours_only + self.evidently_only)

    def disagree_markdown(self, limit: int = SHOWN) -> str:
        if not self.disagree:
            return "Both flag the same features."

        def names(listed: list[str]) -> str:
            more = len(listed) - limit
            return ", ".join(f"`{name}`" for name in listed[:limit]) + (f" and {more} more" if more > 0 else "")

        parts = [("ours only", self.ours_only), ("Evidently only", self.evidently_only)]
        return "; ".join(f"{label}: {names(listed)}" for label, listed in parts if listed)


def compare_verdicts(ours: DriftResult, theirs: EvidentlyResult) -> VerdictComparison:
    """Our counts, Evidently's (its DriftedColumnsCount of the run), and the symmetric difference of the drifted sets."""
    evidently_drifted = {name for name, drifted in theirs.verdicts.items() if drifted}
    return VerdictComparison(
        drifted=len(ours.drifted), tested=len(ours.tested), share=ours.share,
        evidently_drifted=theirs.drifted_count, evidently_tested=theirs.tested, evidently_share=theirs.share,
        ours_only=sorted(set(ours.drifted) - evidently_drifted),
        evidently_only=sorted(evidently_drifted - set(ours.drifted)),
    )


def explanation(comparison: VerdictComparison, ours: DriftResult, theirs: EvidentlyResult, reference: ReferenceProfile,
                spec: DriftSpec, evidently_rows: int) -> str:
    """Markdown: both verdicts and why they can differ (bins, samples, the features each one tests)."""
    methods = ", ".join(f"{method} x{n}" for method, n in sorted(Counter(theirs.methods.values()).items()))
    ks = f"; KS (p <= {spec.p_value}) for {', '.join(spec.ks_features)}" if spec.ks_features else ""
    c = comparison
    return "\n".join([
        (f"**Dagster**: {c.drifted} of {c.tested} features drifted (share {c.share:.3f}). "
         f"**Evidently**: {c.evidently_drifted} of {c.evidently_tested} (share {c.evidently_share:.3f})."),
        "",
        (f"- Ours: PSI >= {spec.psi_threshold} on the reference's {reference.bins} quantile bins (edges from the "
         f"{reference.sample_rows}-row reference sample, counts over all {reference.rows} training rows), "
         f"chi-square p < {spec.p_value} for categories{ks}; over all {ours.rows} rows of the day. "
         "A feature with no value today counts as drifted."),
        *calibration_line(reference, spec),
        (f"- Evidently ({methods}, same thresholds): on raw values of a bounded sample, {evidently_rows} rows of the day "
         f"against the {reference.sample_rows}-row reference sample. Its PSI bins are its own (equal-width over both "
         "samples together), so near the threshold a feature can drift for one and not the other; "
         "it skips a feature empty on either side."),
        f"- Drifted for one only: {c.disagree_markdown()}",
    ])


def calibration_line(reference: ReferenceProfile, spec: DriftSpec) -> list[str]:
    """How many of our thresholds were raised by calibration on the reference's own days (Evidently has none)."""
    raised = [f for f in reference.features if f.null_threshold is not None]
    if not raised:
        return []
    psi_raised = sum(f.kind == "numeric" and f.null_threshold > spec.psi_threshold for f in raised)
    return [(f"- Ours also calibrated: a feature drifts only beyond what a healthy day of the reference reaches "
             f"against the rest of it ({spec.null_quantile:.0%} quantile over its days); {psi_raised} PSI thresholds "
             f"rose above {spec.psi_threshold} that way. Evidently uses the fixed thresholds only, so on a healthy "
             "day it can flag more.")]
