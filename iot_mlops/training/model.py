"""The component-failure classifier: one binary model per component, thresholds from validation.

Everything is a stock scikit-learn class (Pipeline, ColumnTransformer, MultiOutputClassifier,
FixedThresholdClassifier, FrozenEstimator), so skops loads it with a short trusted list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier, ParameterSampler
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer, StandardScaler

Algorithm = Literal["gradient_boosting", "random_forest", "logistic_regression"]

SEARCH_SPACE: dict[str, dict[str, list]] = {
    "gradient_boosting": {
        "learning_rate": [0.03, 0.05, 0.1],
        "max_iter": [150, 300],
        "max_leaf_nodes": [15, 31],
        "min_samples_leaf": [10, 20, 40],
        "l2_regularization": [0.0, 0.1, 1.0],
    },
    "random_forest": {
        "randomforestclassifier__n_estimators": [200, 400],
        "randomforestclassifier__max_depth": [None, 12, 20],
        "randomforestclassifier__min_samples_leaf": [1, 3, 5],
    },
    "logistic_regression": {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]},
}


class ModelConfig(BaseModel):
    """Training choices; the search is a randomized search over time-ordered folds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = "gradient_boosting"
    scaling: Literal["standard", "quantile"] = Field("standard", description="Logistic regression's input scaling.")
    search_iterations: int = Field(3, ge=1, description="Candidates tried (the defaults, then random draws).")
    search_folds: int = Field(3, ge=1, description="Time-ordered folds; the last is the validation part.")
    threshold_beta: float = Field(1.0, gt=0, description="F-beta on validation picks each threshold (>1 favours recall).")
    random_state: int = 42


def base_estimator(algorithm: Algorithm, random_state: int, scaling: str = "standard"):
    """One component's classifier, with class imbalance handled by class weights."""
    if algorithm == "gradient_boosting":
        return HistGradientBoostingClassifier(class_weight="balanced", random_state=random_state)
    if algorithm == "random_forest":
        return make_pipeline(SimpleImputer(), RandomForestClassifier(class_weight="balanced", n_jobs=-1, random_state=random_state))
    if scaling == "quantile":  # scaled once for every component, in the shared prep (`build_pipeline`)
        return make_pipeline(LogisticRegression(class_weight="balanced", max_iter=2000))
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))


def build_pipeline(config: ModelConfig, categorical: list[str], params: dict | None = None) -> Pipeline:
    """One-hot encoding of categorical attributes, then one classifier per component."""
    base = base_estimator(config.algorithm, config.random_state, config.scaling)
    if params:
        base.set_params(**params)
    remainder = "passthrough"
    if config.algorithm == "logistic_regression" and config.scaling == "quantile":
        # Each numeric feature through its training quantiles: a value beyond anything seen in training (a counter that
        # keeps growing) weighs no more than the most extreme one seen, where a z-score lets a linear model extrapolate
        # it into an alarm. Unsupervised, so one transform serves all components.
        quantiles = QuantileTransformer(output_distribution="normal", n_quantiles=200, random_state=config.random_state)
        remainder = make_pipeline(SimpleImputer(), quantiles)
    prep = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        remainder=remainder,
        verbose_feature_names_out=False,
    )
    return Pipeline([("prep", prep), ("classify", MultiOutputClassifier(base))])


def time_folds(ts: pd.Series, val_start: pd.Timestamp, val_end: pd.Timestamp, folds: int, gap: pd.Timedelta) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds ending with the validation block; each trains only on rows a gap before."""
    length = val_end - val_start
    out = []
    for k in range(folds - 1, -1, -1):
        lo, hi = val_start - k * length, val_end - k * length
        train = np.flatnonzero((ts < lo - gap).to_numpy())
        valid = np.flatnonzero(((ts >= lo) & (ts < hi)).to_numpy())
        if len(train) and len(valid):
            out.append((train, valid))
    return out


@dataclass
class SearchResult:
    params: dict
    thresholds: dict[str, float]
    score: float
    tried: list[dict]
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # per component, with a false-alarm budget


def pick_thresholds(Y: pd.DataFrame, proba: pd.DataFrame, beta: float) -> dict[str, float]:
    """Per component, the probability cut that maximises F-beta (0.5 when there are no positives)."""
    out = {}
    for comp in Y.columns:
        truth, prob = Y[comp].to_numpy().astype(bool), proba[comp].to_numpy()
        if not truth.any():
            out[comp] = 0.5
            continue
        order = np.argsort(-prob, kind="stable")
        hits = np.cumsum(truth[order])
        precision, recall = hits / np.arange(1, len(prob) + 1), hits / truth.sum()
        fbeta = (1 + beta**2) * precision * recall / np.maximum(beta**2 * precision + recall, 1e-12)
        best = int(np.argmax(fbeta))
        # Cut halfway to the next lower score so near-ties on new data fall on the same side.
        below = prob[order[best + 1]] if best + 1 < len(prob) else 0.0
        out[comp] = float(np.clip((prob[order[best]] + below) / 2, 1e-4, 0.99))
    return out


@dataclass(frozen=True)
class AlarmBudget:
    """At most `per_device_month` false alarms per component; rows are `step` apart per device."""

    per_device_month: float
    step: pd.Timedelta


def _runs(device: np.ndarray, ts: np.ndarray, mask: np.ndarray, step: np.timedelta64) -> np.ndarray:
    """Run number (from 1) of each masked row: consecutive masked rows of one device, at most `step` apart; 0 elsewhere."""
    joined = np.zeros(len(mask), dtype=bool)
    joined[1:] = mask[:-1] & (device[1:] == device[:-1]) & (ts[1:] - ts[:-1] <= step)
    return np.where(mask, np.cumsum(mask & ~joined), 0)


def budget_threshold(device: np.ndarray, ts: np.ndarray, truth: np.ndarray, prob: np.ndarray,
                     budget: AlarmBudget) -> tuple[float, dict[str, float]]:
    """The cut that alerts on the most failure episodes within the false-alarm budget, and its figures.

    Rows sorted by device and time. An episode is a run of positive rows (the horizon before one failure); it is
    caught when one of its rows alerts. A false alarm is a run of alerts without a positive row. Among the cuts that
    catch the most episodes within the budget, those with the fewest false alarms, and of these the lowest (the
    earliest alerts). When no episode can be caught within the budget, a cut above every score seen.
    """
    step = np.timedelta64(budget.step)
    episodes = _runs(device, ts, truth, step)
    n_episodes = int(episodes.max()) if len(episodes) else 0
    best_of = np.full(n_episodes + 1, -np.inf)
    np.maximum.at(best_of, episodes, np.where(truth, prob, -np.inf))
    best_of = best_of[1:]  # an episode alerts at any cut up to its best score
    months = max(len(prob) * (budget.step / pd.Timedelta(days=30)), 1e-9)
    # Candidates: each episode's best score and a grid in log-odds (scores of balanced models crowd near 0 and 1).
    grid = 1 / (1 + np.exp(-np.arange(-6.0, 36.0, 0.25)))
    candidates = np.unique(np.concatenate([best_of, grid[(grid > prob.min()) & (grid <= prob.max())]]))

    def false_alarms(cut: float) -> int:
        runs = _runs(device, ts, prob >= cut, step)
        hit = np.zeros(runs.max() + 1, dtype=bool)
        hit[runs[truth]] = True
        return int((~hit[1:]).sum())

    best, chosen = (0, -np.inf, -np.inf), None
    for cut in candidates:
        caught, alarms = int((best_of >= cut).sum()), false_alarms(cut)
        if caught and alarms / months <= budget.per_device_month and (caught, -alarms, -cut) > best:
            best, chosen = (caught, -alarms, -cut), float(cut)
    figures = {"failures": n_episodes, "caught": best[0], "false_alarms_per_device_month": -best[1] / months,
               "event_recall": best[0] / n_episodes if n_episodes else float("nan")}
    if chosen is None:  # nothing to catch within the budget: stay silent on anything seen
        figures["false_alarms_per_device_month"] = 0.0
        return float(np.nextafter(prob.max(), np.inf)) if len(prob) else 0.5, figures
    below = prob[prob < chosen]
    # Cut halfway to the next lower score so near-ties on new data fall on the same side.
    return (float((chosen + below.max()) / 2) if len(below) else chosen), figures


def budget_thresholds(Y: pd.DataFrame, proba: pd.DataFrame, ids: pd.DataFrame,
                      budget: AlarmBudget) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per component, `budget_threshold` on out-of-fold scores (`ids`: device_id and ts of their rows)."""
    order = np.lexsort((ids["ts"].to_numpy(), ids["device_id"].to_numpy()))
    device, ts = ids["device_id"].to_numpy()[order], ids["ts"].to_numpy()[order]
    thresholds, figures = {}, {}
    for comp in Y.columns:
        truth = Y[comp].to_numpy().astype(bool)[order]
        thresholds[comp], figures[comp] = budget_threshold(device, ts, truth, proba[comp].to_numpy()[order], budget)
    return thresholds, figures


def search(config: ModelConfig, X: pd.DataFrame, Y: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]],
           categorical: list[str], ids: pd.DataFrame | None = None, budget: AlarmBudget | None = None) -> SearchResult:
    """Randomized search over time-ordered folds; each candidate is scored at thresholds tuned on its folds
    (within the false-alarm budget when there is one; `ids` then gives each row's device_id and ts)."""
    space = SEARCH_SPACE[config.algorithm]
    candidates = [{}] + list(ParameterSampler(space, n_iter=max(config.search_iterations - 1, 0), random_state=config.random_state))
    best, tried = None, []
    for params in candidates:
        out_of_fold = []
        for train, valid in folds:
            model = build_pipeline(config, categorical, params).fit(X.iloc[train], Y.iloc[train].to_numpy())
            out_of_fold.append(probabilities(model, X.iloc[valid], list(Y.columns)))
        proba = pd.concat(out_of_fold)
        truth = Y.loc[proba.index]
        validation: dict[str, dict[str, float]] = {}
        if budget is None:
            thresholds = pick_thresholds(truth, proba, config.threshold_beta)
        else:
            thresholds, validation = budget_thresholds(truth, proba, ids.loc[proba.index], budget)
        predicted = np.column_stack([proba[c] >= thresholds[c] for c in Y.columns])
        score = macro_fbeta(truth.to_numpy(), predicted, config.threshold_beta)
        tried.append({**params, "score": score})
        if best is None or score > best.score:
            best = SearchResult(params=params, thresholds=thresholds, score=score, tried=tried, validation=validation)
    return best


def probabilities(model: Pipeline, X: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    """Failure probability per component (columns), one row per input row."""
    proba = model.predict_proba(X)
    return pd.DataFrame({c: p[:, 1] for c, p in zip(components, proba)}, index=X.index)


def macro_fbeta(y_true: np.ndarray, y_pred: np.ndarray, beta: float) -> float:
    """Mean over columns of F-beta of 0/1 labels, 0 where undefined: sklearn's fbeta_score(zero_division=0),
    vectorised (permutation importance calls this ~100 times per model, and sklearn's checks dominated)."""
    truth, pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = (truth & pred).sum(axis=0)
    weighted = (1 + beta**2) * tp + beta**2 * (truth & ~pred).sum(axis=0) + (~truth & pred).sum(axis=0)
    return float(np.mean(np.divide((1 + beta**2) * tp, weighted, out=np.zeros(len(tp)), where=weighted > 0)))


def with_thresholds(model: Pipeline, thresholds: dict[str, float], X: pd.DataFrame, Y: pd.DataFrame) -> Pipeline:
    """Wrap each fitted component model in a fixed threshold, without refitting it."""
    prepared = model.named_steps["prep"].transform(X)
    classify = model.named_steps["classify"]
    classify.estimators_ = [
        FixedThresholdClassifier(FrozenEstimator(est), threshold=thresholds[c]).fit(prepared, Y[c].to_numpy())
        for c, est in zip(Y.columns, classify.estimators_)
    ]
    return model
