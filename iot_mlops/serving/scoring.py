"""Scoring a few feature rows with a loaded model: probabilities, alerts, label and explanations in one pass.

The failure pipeline (one-hot prep, then one classifier per component behind a fixed threshold) is run step by
step so each component's final input is at hand for its explanation. The result is checked against the
pipeline's own predict_proba and predict on probe rows when the model loads; a model that differs, or has another
shape, is scored by sklearn as a whole, without explanations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline

from iot_mlops.serving import explain
from iot_mlops.serving.compiled import Affine, Prep
from iot_mlops.training.anomaly import anomaly_scores
from iot_mlops.training.model import probabilities

log = logging.getLogger(__name__)
NO_ALERT = "none"
ANOMALOUS, NORMAL = "anomalous", "normal"
UNAVAILABLE = explain.Explanation("unavailable", "", "", 0.0, 0.0, ())


@dataclass(frozen=True)
class Scored:
    labels: list[str]
    probabilities: np.ndarray  # rows x components (failure); empty columns for anomaly
    alerts: np.ndarray  # rows x components, bool
    scores: np.ndarray | None  # anomaly score per row (higher is more anomalous)
    explanations: list[explain.Explanation]


@dataclass(frozen=True)
class Inputs:
    """A feature table in the form a scorer reads, made once per table and model: rows are picked by index."""

    frame: pd.DataFrame  # the model's input columns
    prepared: np.ndarray | None  # rows x columns after the shared prep, when the scorer replays it
    values: explain.RowValues


@dataclass(frozen=True)
class _Component:
    transform: Pipeline | None  # the steps between the shared prep and the final estimator
    final: object
    threshold: float | None
    names: list[str]  # raw features the final estimator's input columns come from
    grouping: np.ndarray  # final input columns x names
    forest: explain.FlatForest | None  # trees flattened once, for path attribution
    affine: Affine | None  # `transform` replayed in numpy, when it is per-column affine


def _linear(final) -> bool:
    return type(final).__name__ == "LogisticRegression" and np.asarray(final.coef_).shape[0] == 1


def _unwrap(estimator) -> tuple[object, float | None]:
    threshold = None
    if isinstance(estimator, FixedThresholdClassifier):
        if estimator.threshold == "auto":
            return estimator, None
        threshold = float(estimator.threshold)
        estimator = getattr(estimator, "estimator_", estimator.estimator)
    return getattr(estimator, "estimator", estimator), threshold  # FrozenEstimator holds the fitted model


def _decompose(component: _Component, Z: np.ndarray) -> explain.Decomposition | None:
    if _linear(component.final):
        return explain.linear(component.final, Z)
    return explain.paths(component.forest, Z) if component.forest is not None else None


def probe_rows(model, rows: int = 24, seed: int = 0) -> pd.DataFrame:
    """Synthetic inputs covering every category (and an unknown one) and missing values, for the load-time check."""
    rng = np.random.default_rng(seed)
    categories: dict[str, list] = {}
    prep = model.steps[0][1] if isinstance(model, Pipeline) else None
    for _, encoder, columns in getattr(prep, "transformers_", []):
        for column, values in zip(columns, getattr(encoder, "categories_", [])):
            categories[column] = [*list(values), "__unseen__"]
    data = {}
    for column in model.feature_names_in_:
        if column in categories:
            data[column] = [categories[column][i % len(categories[column])] for i in range(rows)]
        else:
            values = rng.normal(0.0, 3.0, rows) * rng.choice([1.0, 10.0, 100.0], rows)
            values[rng.random(rows) < 0.1] = np.nan
            data[column] = values
    return pd.DataFrame(data)


class FailureScorer:
    """Component-failure probabilities, alerts (the model's own thresholds) and the label, as batch scoring defines them."""

    def __init__(self, model, components: list[str], top: int = 5):
        self.model, self.components, self.top = model, list(components), top
        self.inputs = list(model.feature_names_in_)
        self.stepwise = self._split(model)
        self.compiled: Prep | None = None
        if self.stepwise is not None:
            probe = probe_rows(model)
            self.compiled = Prep.compile(self.stepwise[0], self.inputs)
            if self.compiled is not None and not self._agrees(probe):
                log.warning("numpy replay of the transforms differs from sklearn; using sklearn's transforms")
                self.compiled = None
            if self.compiled is None and not self._agrees(probe):
                log.warning("step-by-step scoring differs from the pipeline; scoring it whole, without explanations")
                self.stepwise = None

    def _split(self, model) -> tuple[ColumnTransformer, list[_Component]] | None:
        if not (isinstance(model, Pipeline) and len(model.steps) == 2 and isinstance(model.steps[0][1], ColumnTransformer)
                and isinstance(model.steps[1][1], MultiOutputClassifier)):
            return None
        prep, classify = model.steps[0][1], model.steps[1][1]
        if len(classify.estimators_) != len(self.components):
            raise ValueError(f"model has {len(classify.estimators_)} outputs for {len(self.components)} components")
        prepared = list(prep.get_feature_names_out())
        parts = []
        for estimator in classify.estimators_:
            inner, threshold = _unwrap(estimator)
            transform, final = (inner[:-1], inner[-1]) if isinstance(inner, Pipeline) else (None, inner)
            columns = list(transform.get_feature_names_out(prepared)) if transform is not None else prepared
            forest = None if _linear(final) else explain.flatten(final)
            affine = Affine.probe(transform, len(prepared)) if transform is not None else None
            parts.append(_Component(transform, final, threshold, *explain.source_features(columns, self.inputs), forest, affine))
        return prep, parts

    def _agrees(self, X: pd.DataFrame) -> bool:
        probs, alerts, _ = self._stepwise(X)
        expected = probabilities(self.model, X, self.components).to_numpy()
        return bool(np.allclose(probs, expected, rtol=0, atol=1e-9) and (alerts == self.model.predict(X).astype(bool)).all())

    def _stepwise(self, X: pd.DataFrame):
        return self._components(self._prepare(X))

    def _prepare(self, X: pd.DataFrame) -> np.ndarray:
        prep = self.stepwise[0]
        return self.compiled.transform(X) if self.compiled is not None else np.asarray(prep.transform(X), dtype=float)

    def _components(self, prepared: np.ndarray):
        parts = self.stepwise[1]
        probs, alerts, inputs = np.zeros((len(prepared), len(parts))), np.zeros((len(prepared), len(parts)), bool), []
        for k, part in enumerate(parts):
            if part.transform is None:
                Z = prepared
            elif self.compiled is not None and part.affine is not None:
                Z = part.affine.apply(prepared)
            else:
                Z = np.asarray(part.transform.transform(prepared), dtype=float)
            inputs.append(Z)
            if _linear(part.final):
                decision = Z @ np.asarray(part.final.coef_, dtype=float).reshape(-1) + float(np.asarray(part.final.intercept_).reshape(-1)[0])
                probs[:, k] = expit(decision)
            else:
                probs[:, k] = part.final.predict_proba(Z)[:, list(part.final.classes_).index(1)]
            alerts[:, k] = probs[:, k] >= part.threshold if part.threshold is not None else probs[:, k] > 0.5
        return probs, alerts, inputs

    def prepare(self, frame: pd.DataFrame) -> Inputs:
        """The table's inputs, and the shared prep applied to all its rows at once (the costly part of scoring)."""
        X = frame[self.inputs]
        prepared = self._prepare(X) if self.stepwise is not None else None
        return Inputs(X, prepared, explain.RowValues(X))

    def score(self, X: pd.DataFrame, explain_rows: bool = True) -> Scored:
        return self.score_rows(self.prepare(X), np.arange(len(X)), explain_rows)

    def score_rows(self, inputs: Inputs, rows: np.ndarray, explain_rows: bool = True) -> Scored:
        """Score rows `rows` of prepared inputs."""
        if self.stepwise is None:
            X = inputs.frame.iloc[rows]
            probs = probabilities(self.model, X, self.components).to_numpy()
            alerts, parts = self.model.predict(X).astype(bool), None
        else:
            probs, alerts, parts = self._components(inputs.prepared[rows])
        strongest = np.where(alerts, probs, -1.0).argmax(axis=1)
        labels = [self.components[s] if a.any() else NO_ALERT for s, a in zip(strongest, alerts)]
        if not explain_rows:
            return Scored(labels, probs, alerts, None, [])
        # Explain the alerted component, or the likeliest one when there is no alert.
        targets = np.where(alerts.any(axis=1), strongest, probs.argmax(axis=1))
        explanations: list[explain.Explanation] = [UNAVAILABLE] * len(rows)
        for k in np.unique(targets) if parts is not None else []:
            picked = np.flatnonzero(targets == k)
            part = self.stepwise[1][k]
            decomposition = _decompose(part, parts[k][picked])
            if decomposition is None:
                continue
            found = explain.top_features(decomposition, part.grouping, part.names, inputs.values, rows[picked],
                                         [self.components[k]] * len(picked), self.top)
            for i, explanation in zip(picked, found):
                explanations[i] = explanation
        return Scored(labels, probs, alerts, None, explanations)


class AnomalyScorer:
    """The anomaly model's score (higher is more anomalous) and its own inlier/outlier decision."""

    def __init__(self, model, top: int = 5):
        self.model, self.top = model, top
        self.inputs = list(model.feature_names_in_)
        steps = model.steps if isinstance(model, Pipeline) else []
        forest = explain.flatten(steps[-1][1]) if steps else None
        self.forest = forest
        if forest is not None:
            columns = list(model[:-1].get_feature_names_out())
            self.names, self.grouping = explain.source_features(columns, self.inputs)

    def prepare(self, frame: pd.DataFrame) -> Inputs:
        X = frame[self.inputs]
        prepared = np.asarray(self.model[:-1].transform(X), dtype=float) if self.forest is not None else None
        return Inputs(X, prepared, explain.RowValues(X))

    def score(self, X: pd.DataFrame, explain_rows: bool = True) -> Scored:
        return self.score_rows(self.prepare(X), np.arange(len(X)), explain_rows)

    def score_rows(self, inputs: Inputs, rows: np.ndarray, explain_rows: bool = True) -> Scored:
        """Score rows `rows` of prepared inputs."""
        X = inputs.frame.iloc[rows]
        scores = anomaly_scores(self.model, X)
        flagged = self.model.predict(X) == -1
        labels = [ANOMALOUS if f else NORMAL for f in flagged]
        explanations = []
        if explain_rows:
            if self.forest is None:
                explanations = [UNAVAILABLE] * len(X)
            else:
                decomposition = explain.paths(self.forest, inputs.prepared[rows])
                explanations = explain.top_features(decomposition, self.grouping, self.names, inputs.values, rows, labels,
                                                    self.top)
        empty = np.zeros((len(X), 0))
        return Scored(labels, empty, empty.astype(bool), scores, explanations)
