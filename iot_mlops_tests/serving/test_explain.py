"""Scoring step by step gives the pipeline's own probabilities and alerts, and every explanation adds up to the score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from iot_mlops.serving import explain
from iot_mlops.serving.scoring import FailureScorer, probe_rows
from iot_mlops.training.model import probabilities
from iot_mlops_tests.serving.conftest import COMPONENTS, failure_model, frame

ALGORITHMS = {"logistic_regression": None, "gradient_boosting": {"max_iter": 40},
              "random_forest": {"randomforestclassifier__n_estimators": 15}}


@pytest.fixture(scope="module", params=list(ALGORITHMS))
def fitted(request):
    return request.param, failure_model(request.param, ALGORITHMS[request.param])


def rows() -> pd.DataFrame:
    X = frame(60, 11)
    X.loc[::7, "power_kw_std_24h"] = np.nan
    X.loc[3, "model"] = "never-seen"
    return X


def test_stepwise_scores_equal_the_pipelines_own(fitted):
    _, model = fitted
    scorer = FailureScorer(model, COMPONENTS)
    assert scorer.stepwise is not None and scorer.compiled is not None  # the numpy replay of the transforms is in use
    X = rows()
    scored = scorer.score(X)
    np.testing.assert_allclose(scored.probabilities, probabilities(model, X, COMPONENTS).to_numpy(), rtol=0, atol=1e-12)
    assert (scored.alerts == model.predict(X).astype(bool)).all()
    assert 0 < scored.alerts.sum() < scored.alerts.size  # both sides of the thresholds are exercised


def test_every_explanation_adds_up_to_the_probability_of_its_target(fitted):
    algorithm, model = fitted
    scorer = FailureScorer(model, COMPONENTS, top=50)
    X = rows()
    scored = scorer.score(X)
    for i, e in enumerate(scored.explanations):
        k = COMPONENTS.index(e.target)
        assert e.target == (scored.labels[i] if scored.alerts[i].any() else COMPONENTS[int(scored.probabilities[i].argmax())])
        total = e.base_value + sum(c.contribution for c in e.top)  # top=50 lists every non-zero feature
        assert abs(total - e.output) < 1e-4
        assert abs((expit(e.output) if e.unit == explain.LOG_ODDS else e.output) - scored.probabilities[i, k]) < 1e-5
        # One-hot columns are summed back to their categorical feature, shown with its raw value.
        names = [c.feature for c in e.top]
        assert not any(n.startswith("model_") for n in names) and len(set(names)) == len(names)
        if "model" in names:
            assert next(c.value for c in e.top if c.feature == "model") == X.loc[i, "model"]
    assert scored.explanations[0].method == ("linear_contributions" if algorithm == "logistic_regression"
                                             else "tree_path_attribution")


def test_linear_contributions_are_coefficient_times_standardized_value():
    model = failure_model("logistic_regression")
    X = rows().head(5)
    e = FailureScorer(model, COMPONENTS, top=50).score(X).explanations[0]
    k = COMPONENTS.index(e.target)
    inner = model.named_steps["classify"].estimators_[k].estimator_.estimator
    imputer, scaler, lr = inner.steps[0][1], inner.steps[1][1], inner.steps[2][1]
    j = list(model.named_steps["prep"].get_feature_names_out()).index("temperature_c_mean_24h")
    assert imputer.statistics_.shape == scaler.mean_.shape  # no column dropped between prep and the model
    z = (X.loc[0, "temperature_c_mean_24h"] - scaler.mean_[j]) / scaler.scale_[j]
    shown = next(c for c in e.top if c.feature == "temperature_c_mean_24h")
    assert abs(shown.contribution - lr.coef_[0, j] * z) < 1e-6
    assert abs(e.base_value - lr.intercept_[0]) < 1e-6


def test_an_unknown_model_shape_is_scored_whole_without_explanations():
    X, Y = frame(200, 1), pd.DataFrame({c: (np.arange(200) % (i + 2) == 0).astype(int) for i, c in enumerate(COMPONENTS)})
    from sklearn.linear_model import LogisticRegression

    prep = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["model"])],
                             remainder="passthrough")
    model = Pipeline([("prep", prep), ("scale", StandardScaler()),
                      ("clf", MultiOutputClassifier(LogisticRegression(max_iter=500)))]).fit(X, Y.to_numpy())
    scorer = FailureScorer(model, COMPONENTS)
    assert scorer.stepwise is None
    scored = scorer.score(frame(10, 2))
    np.testing.assert_allclose(scored.probabilities, probabilities(model, frame(10, 2), COMPONENTS).to_numpy())
    assert {e.method for e in scored.explanations} == {"unavailable"}


def test_probe_rows_cover_every_category_an_unseen_one_and_missing_values():
    probe = probe_rows(failure_model("logistic_regression"))
    assert {"HX-100", "HX-200", "TX-9", "__unseen__"} <= set(probe["model"])
    assert probe.drop(columns="model").isna().any().any()
