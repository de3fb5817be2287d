"""Per-prediction explanations: which features drove one score, and by how much.

Every method is an exact additive decomposition of this one prediction: base + sum(contributions) equals the
model's own raw output, so the numbers add up to what was served.
- Logistic regression: coef * scaled value on the log-odds (the model is linear there; this is exact,
  and the same as its Shapley values with the training mean as the baseline).
- Gradient-boosted trees, random forests, isolation forests: path attribution (Saabas): along the path of the
  row through each tree, each split's feature is credited with the change in the node's expected output
  (the training-weighted mean of the leaves below). Exact and fast (one vectorized walk, about a millisecond),
  but not Shapley values: features split near the root can get more credit than TreeSHAP would give them;
  TreeSHAP would need the `shap` package, and its exact algorithm costs far more per request.
One-hot columns are summed back to their categorical feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

LOG_ODDS, PROBABILITY, PATH_LENGTH = "log_odds", "probability", "isolation_path_shortened"


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: Any
    contribution: float


@dataclass(frozen=True)
class Explanation:
    method: str
    unit: str
    target: str
    base_value: float
    output: float  # base_value + the sum of all contributions: the model's raw output being explained
    top: tuple[Contribution, ...]


@dataclass(frozen=True)
class Decomposition:
    """Contributions (rows x input columns of the final estimator) and the base value per row."""

    method: str
    unit: str
    contributions: np.ndarray
    base: np.ndarray


def linear(estimator, Z: np.ndarray) -> Decomposition:
    """coef * value for a binary linear model fed standardized inputs."""
    coef = np.asarray(estimator.coef_, dtype=float).reshape(-1)
    intercept = float(np.asarray(estimator.intercept_).reshape(-1)[0])
    return Decomposition("linear_contributions", LOG_ODDS, Z * coef, np.full(len(Z), intercept))


@dataclass(frozen=True)
class FlatForest:
    """All trees of an ensemble in flat arrays; node values are in the unit being explained."""

    feature: np.ndarray  # input column split on, -1 at leaves
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    weight: float  # per-tree factor: 1/n for an average, 1 for a sum, -1/n for isolation (shorter is more anomalous)
    offset: float  # added once (gradient boosting's baseline)
    float32: bool  # sklearn trees compare inputs cast to float32
    method: str
    unit: str


def _expected_values(value: np.ndarray, count: np.ndarray, left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """Internal node value = training-count-weighted mean of its children (children come after parents)."""
    out = value.astype(float).copy()
    for node in range(len(out) - 1, -1, -1):
        if not leaf[node]:
            lc, rc = count[left[node]], count[right[node]]
            total = lc + rc
            out[node] = (out[left[node]] * lc + out[right[node]] * rc) / total if total else out[left[node]]
    return out


def _concat(trees: list[dict], **kwargs) -> FlatForest:
    offsets = np.cumsum([0] + [len(t["feature"]) for t in trees[:-1]])
    cat = lambda key: np.concatenate([t[key] for t in trees])
    shift = lambda key: np.concatenate([np.where(t["feature"] >= 0, t[key] + o, -1) for t, o in zip(trees, offsets)])
    return FlatForest(feature=cat("feature"), threshold=cat("threshold"), left=shift("left"), right=shift("right"),
                      missing_left=cat("missing_left").astype(bool), value=cat("value"), roots=offsets.astype(np.int64),
                      **kwargs)


def _sklearn_tree(tree, value: np.ndarray, features: np.ndarray | None = None) -> dict:
    t = tree.tree_
    leaf = t.children_left < 0
    feature = np.where(leaf, -1, t.feature)
    if features is not None:  # a bagged tree sees a subset of the columns
        feature = np.where(leaf, -1, np.asarray(features)[np.maximum(t.feature, 0)])
    missing = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=np.uint8))
    return {"feature": feature, "threshold": t.threshold, "left": t.children_left, "right": t.children_right,
            "missing_left": missing, "value": value}


def _c(n: np.ndarray) -> np.ndarray:
    """Average path length of an unsuccessful BST search among n points (the isolation forest normalizer)."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def flatten(estimator) -> FlatForest | None:
    """A FlatForest for the tree ensembles the project trains, or None for any other estimator."""
    name = type(estimator).__name__
    if name == "HistGradientBoostingClassifier" and len(estimator._predictors[0]) == 1:
        trees = []
        for (predictor,) in estimator._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            leaf = nodes["is_leaf"].astype(bool)
            left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
            trees.append({"feature": np.where(leaf, -1, nodes["feature_idx"]), "threshold": nodes["num_threshold"],
                          "left": left, "right": right, "missing_left": nodes["missing_go_to_left"],
                          "value": _expected_values(nodes["value"], nodes["count"].astype(float), left, right, leaf)})
        baseline = float(np.asarray(estimator._baseline_prediction).reshape(-1)[0])
        return _concat(trees, weight=1.0, offset=baseline, float32=False, method="tree_path_attribution", unit=LOG_ODDS)
    if name in ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier"):
        members = estimator.estimators_ if hasattr(estimator, "estimators_") else [estimator]
        positive = list(estimator.classes_).index(1) if 1 in list(estimator.classes_) else len(estimator.classes_) - 1
        trees = []
        for tree in members:
            value = tree.tree_.value[:, 0, :]
            trees.append(_sklearn_tree(tree, value[:, positive] / np.maximum(value.sum(axis=1), 1e-300)))
        return _concat(trees, weight=1.0 / len(members), offset=0.0, float32=True, method="tree_path_attribution",
                       unit=PROBABILITY)
    if name == "IsolationForest":
        trees = []
        for tree, features in zip(estimator.estimators_, estimator.estimators_features_):
            depth = tree.tree_.compute_node_depths().astype(float) - 1.0
            trees.append(_sklearn_tree(tree, depth + _c(tree.tree_.n_node_samples), features))
        return _concat(trees, weight=-1.0 / len(trees), offset=0.0, float32=True, method="isolation_path_attribution",
                       unit=PATH_LENGTH)
    return None


def paths(forest: FlatForest, Z: np.ndarray) -> Decomposition:
    """Walk every row through every tree at once, crediting each split's feature with the change in node value."""
    Z = np.asarray(Z, dtype=float)
    if forest.float32:
        Z = Z.astype(np.float32).astype(float)
    rows, trees = len(Z), len(forest.roots)
    node = np.broadcast_to(forest.roots, (rows, trees)).copy()
    row = np.broadcast_to(np.arange(rows)[:, None], (rows, trees))
    contributions = np.zeros(Z.shape)
    while True:
        feature = forest.feature[node]
        active = feature >= 0
        if not active.any():
            break
        r, n, f = row[active], node[active], feature[active]
        x = Z[r, f]
        go_left = np.where(np.isnan(x), forest.missing_left[n], x <= forest.threshold[n])
        child = np.where(go_left, forest.left[n], forest.right[n])
        np.add.at(contributions, (r, f), forest.value[child] - forest.value[n])
        node[active] = child
    base = forest.offset + forest.weight * forest.value[forest.roots].sum()
    return Decomposition(forest.method, forest.unit, contributions * forest.weight, np.full(rows, base))


def raw_output(decomposition: Decomposition) -> np.ndarray:
    """What the decomposition adds up to, per row."""
    return decomposition.base + decomposition.contributions.sum(axis=1)


def probability(decomposition: Decomposition) -> np.ndarray:
    """The probability a log-odds or probability decomposition stands for."""
    out = raw_output(decomposition)
    return expit(out) if decomposition.unit == LOG_ODDS else out


def source_features(columns: list[str], raw: list[str]) -> tuple[list[str], np.ndarray]:
    """Group transformed columns (one-hot `model_HX-100`, ...) by the raw feature they come from: (names, columns x names)."""
    names: list[str] = []
    index: dict[str, int] = {}
    owner = []
    raw_set = set(raw)
    for column in columns:
        source = column if column in raw_set else max((r for r in raw if column.startswith(f"{r}_")), key=len, default=column)
        owner.append(index.setdefault(source, len(names)))
        if owner[-1] == len(names):
            names.append(source)
    grouping = np.zeros((len(columns), len(names)))
    grouping[np.arange(len(columns)), owner] = 1.0
    return names, grouping


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


class RowValues:
    """Raw input values by (row, feature name), read only for the features an explanation shows."""

    def __init__(self, frame):
        self.columns = {c: frame[c].to_numpy() for c in frame.columns}

    def get(self, row: int, name: str) -> Any:
        column = self.columns.get(name)
        return _json_value(column[row]) if column is not None else None


def top_features(decomposition: Decomposition, grouping: np.ndarray, names: list[str], values: RowValues,
                 rows: np.ndarray, targets: list[str], top: int) -> list[Explanation]:
    """Per decomposition row j (input row `rows[j]`): the `top` features by absolute contribution."""
    grouped = decomposition.contributions @ grouping
    order = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :top]
    base = decomposition.base.round(6).tolist()
    output = (decomposition.base + grouped.sum(axis=1)).round(6).tolist()
    picked = np.take_along_axis(grouped, order, axis=1)
    shown, picked, order = (picked != 0.0).tolist(), picked.round(6).tolist(), order.tolist()
    out = []
    for j, row in enumerate(rows):
        items = tuple(Contribution(names[i], values.get(row, names[i]), c) for i, c, keep in zip(order[j], picked[j], shown[j])
                      if keep)
        out.append(Explanation(decomposition.method, decomposition.unit, targets[j], base[j], output[j], items))
    return out
