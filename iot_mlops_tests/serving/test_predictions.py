"""GET /api/predictions/...: the champion's scores, explanation, staleness, the stored record and its shadow."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from scipy.special import expit

from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION
from iot_mlops.serving.explain import _c
from iot_mlops.serving.service import OnlineFeatures
from iot_mlops.training.anomaly import anomaly_scores
from iot_mlops.training.model import probabilities
from iot_mlops_tests.serving.conftest import (
    ANOMALY,
    COMPONENTS,
    DEVICE_TYPE,
    FAILURE,
    FLEET,
    FRESH,
    STALE,
    Api,
    online_rows,
    write_online,
)


def row(api: Api, device: str) -> pd.DataFrame:
    return api.online[api.online["device_id"] == device].reset_index(drop=True)


def test_prediction_is_the_champions_score_with_an_explanation_and_is_recorded(api: Api):
    response = api.predict(FRESH[1])  # the row with a missing value
    assert response.status_code == 200, response.text
    body = response.json()
    champion = api.registry.load_model(FAILURE, CHAMPION)
    X = row(api, FRESH[1])
    expected = probabilities(champion, X[list(champion.feature_names_in_)], COMPONENTS).iloc[0]
    assert body["model"] == {"name": FAILURE, "version": api.registry.alias_version(FAILURE, CHAMPION)}
    assert (body["fleet"], body["device_id"], body["prediction_type"]) == (FLEET, FRESH[1], "component_failure")
    np.testing.assert_allclose([body["probabilities"][c] for c in COMPONENTS], expected.to_numpy(), atol=1e-6)
    alerts = champion.predict(X[list(champion.feature_names_in_)])[0].astype(bool)
    assert body["alerts"] == [c for c, a in zip(COMPONENTS, alerts) if a]
    strongest = max(body["alerts"], key=lambda c: body["probabilities"][c]) if body["alerts"] else "none"
    assert body["label"] == strongest

    explanation = body["explanation"]
    target = explanation["target"]
    assert target == (strongest if body["alerts"] else max(COMPONENTS, key=lambda c: body["probabilities"][c]))
    # The champion (boosted trees) is explained on the log-odds, and the decomposition adds up to its probability.
    assert (explanation["method"], explanation["unit"]) == ("tree_path_attribution", "log_odds")
    assert abs(expit(explanation["output"]) - body["probabilities"][target]) < 1e-4
    top = explanation["top"]
    assert 0 < len(top) <= 5 and [abs(t["contribution"]) for t in top] == sorted((abs(t["contribution"]) for t in top), reverse=True)
    for item in top:
        assert item["value"] == (X.loc[0, item["feature"]] if pd.notna(X.loc[0, item["feature"]]) else None)

    stored = PredictionLog(api.settings.store).get(body["prediction_id"])
    assert stored["model_version"] == body["model"]["version"] and stored["source"] == "api"
    assert stored["predicted_component"] == body["label"] and stored["device_id"] == FRESH[1]
    assert pd.Timestamp(stored["ts"]) == pd.Timestamp(X.loc[0, "ts"])
    np.testing.assert_allclose([stored["probabilities"][c] for c in COMPONENTS], expected.to_numpy(), atol=1e-6)


def test_challenger_scores_in_shadow_and_only_the_store_sees_it(api: Api):
    body = api.predict(FRESH[2]).json()
    assert "shadow" not in body and api.registry.alias_version(FAILURE, CHALLENGER) != body["model"]["version"]
    challenger = api.registry.load_model(FAILURE, CHALLENGER)
    X = row(api, FRESH[2])[list(challenger.feature_names_in_)]
    shadow = PredictionLog(api.settings.store).get(body["prediction_id"])["shadow"]
    assert shadow["model_version"] == api.registry.alias_version(FAILURE, CHALLENGER)
    np.testing.assert_allclose([shadow["probabilities"][c] for c in COMPONENTS],
                               probabilities(challenger, X, COMPONENTS).iloc[0].to_numpy(), atol=1e-6)
    alerts = challenger.predict(X)[0].astype(bool)
    assert shadow["alerts"] == [c for c, a in zip(COMPONENTS, alerts) if a]


def test_anomaly_prediction_has_the_models_score_and_an_additive_explanation(api: Api):
    response = api.predict(FRESH[3], kind="anomaly")
    assert response.status_code == 200, response.text
    body = response.json()
    model = api.registry.load_model(ANOMALY, CHAMPION)
    X = row(api, FRESH[3])[list(model.feature_names_in_)]
    score = float(anomaly_scores(model, X)[0])
    assert abs(body["anomaly_score"] - score) < 1e-6 and body["probabilities"] == {}
    assert body["label"] == ("anomalous" if model.predict(X)[0] == -1 else "normal")
    explanation = body["explanation"]
    assert explanation["method"] == "isolation_path_attribution"
    # output = -(mean path length); the score is 2 ** (-mean path length / c(max_samples)).
    assert abs(2 ** (explanation["output"] / _c(np.array([model[-1]._max_samples]))[0]) - score) < 1e-4


def test_features_older_than_the_profiles_max_age_are_flagged_stale(api: Api):
    fresh, stale = api.predict(FRESH[0]).json()["features"], api.predict(STALE).json()["features"]
    assert fresh["max_age_seconds"] == stale["max_age_seconds"] == 3 * 3600  # water_heaters: features.max_age 3h
    assert not fresh["stale"] and 0 < fresh["age_seconds"] < fresh["max_age_seconds"]
    assert stale["stale"] and stale["age_seconds"] > 10 * 3600 - 60


def test_unknown_device_type_device_or_prediction_type_is_404_and_bad_ids_are_422(api: Api):
    before = PredictionLog(api.settings.store).count(source="api")
    for path, needle in [(f"/api/predictions/{DEVICE_TYPE}/WH-9999/component_failure", "unknown device"),
                         (f"/api/predictions/{DEVICE_TYPE}/{FRESH[0]}/remaining_life", "unknown prediction type"),
                         (f"/api/predictions/toaster/{FRESH[0]}/component_failure", "unknown device type")]:
        response = api.get(path)
        assert response.status_code == 404 and needle in response.json()["detail"], response.text
    assert api.get(f"/api/predictions/{DEVICE_TYPE}/bad%20id/component_failure").status_code == 422
    assert api.get(f"/api/predictions/{DEVICE_TYPE}/{FRESH[0]}/Not-An-Identifier").status_code == 422
    assert PredictionLog(api.settings.store).count(source="api") == before


def test_a_fleet_without_a_champion_is_503_with_a_clear_message(api: Api):
    lake = api.settings.lake
    write_online(lake, "azure_pdm", pd.DataFrame({"device_id": ["7"], "ts": [pd.Timestamp("2015-03-01")], "volt_mean_3h": [170.0]}))
    response = api.get("/api/predictions/machine/7/component_failure")
    assert response.status_code == 503
    assert "no champion for model azure_pdm_component_failure" in response.json()["detail"]


def test_batch_scores_many_devices_and_lists_the_ones_it_cannot(api: Api):
    items = [{"device_type": DEVICE_TYPE, "device_id": d, "prediction_type": "component_failure"} for d in FRESH]
    items.insert(2, {"device_type": DEVICE_TYPE, "device_id": "WH-0000", "prediction_type": "component_failure"})
    items.append({"device_type": DEVICE_TYPE, "device_id": STALE, "prediction_type": "anomaly"})
    response = api.post("/api/predictions/batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(e["index"], e["status"]) for e in body["errors"]] == [(2, 404)]
    assert [p["device_id"] for p in body["predictions"]] == [*FRESH, STALE]
    assert body["predictions"][-1]["prediction_type"] == "anomaly"
    # The same devices one by one give the same scores.
    for prediction in body["predictions"][:3]:
        single = api.predict(prediction["device_id"]).json()
        assert single["probabilities"] == prediction["probabilities"] and single["label"] == prediction["label"]
    log = PredictionLog(api.settings.store)
    assert all(log.get(p["prediction_id"]) is not None for p in body["predictions"])
    assert len({p["prediction_id"] for p in body["predictions"]}) == len(body["predictions"])


def test_batch_size_is_bounded(api: Api):
    item = {"device_type": DEVICE_TYPE, "device_id": FRESH[0], "prediction_type": "component_failure"}
    assert api.post("/api/predictions/batch", json={"items": [item] * 101}).status_code == 422
    assert api.post("/api/predictions/batch", json={"items": []}).status_code == 422
    huge = [{**item, "device_id": "W" * 120}] * 150  # over the 16 kB body limit of the test app
    response = api.post("/api/predictions/batch", json={"items": huge})
    assert response.status_code == 413 and "over" in response.json()["detail"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(api: Api):
    from concurrent.futures import ThreadPoolExecutor

    devices = FRESH * 4
    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda d: api.predict(d).json(), devices))
    assert [b["device_id"] for b in bodies] == devices
    by_device = {}
    for body in bodies:
        by_device.setdefault(body["device_id"], set()).add(tuple(sorted(body["probabilities"].items())))
    assert all(len(v) == 1 for v in by_device.values())
    assert len({b["prediction_id"] for b in bodies}) == len(bodies)


def test_a_replaced_online_table_is_served_after_the_recheck_interval(tmp_path):
    now = [0.0]
    features = OnlineFeatures(tmp_path, recheck_seconds=1.0, clock=lambda: now[0])
    assert features.table(FLEET) is None
    first = online_rows(datetime.now(UTC))
    write_online(tmp_path, FLEET, first)
    assert list(features.table(FLEET).rows) == list(first["device_id"])  # a missing table is looked for every time
    write_online(tmp_path, FLEET, first.iloc[:2])
    now[0] = 0.5
    assert len(features.table(FLEET).rows) == len(first)  # within the interval: no stat, the table in memory
    now[0] = 1.5
    assert list(features.table(FLEET).rows) == list(first["device_id"][:2])
