"""Model endpoints, rollback over HTTP, champion hot-swap without restart, and the shadow comparison."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import numpy as np
import sqlalchemy as sa

from iot_mlops.opstore.engine import engine_for
from iot_mlops.opstore.schema import predictions
from iot_mlops.registry.lifecycle import promote, rollback
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION
from iot_mlops_tests.serving.conftest import ANOMALY, COMPONENTS, FAILURE, FLEET, FRESH, Api, running_api, store


def test_models_list_and_detail_show_aliases_versions_metrics_and_what_is_served(api: Api):
    listed = {m["name"]: m for m in api.get("/api/models").json()}
    assert set(listed) == {FAILURE, ANOMALY}
    assert listed[FAILURE] | {"serving": None} == {"name": FAILURE, "champion": "2", "challenger": "3", "latest_version": "3",
                                                  "versions": 3, "serving": None}
    assert listed[FAILURE]["serving"] == {"champion": "2", "challenger": "3"}
    detail = api.get(f"/api/models/{FAILURE}").json()
    assert (detail["fleet"], detail["prediction_type"]) == (FLEET, "component_failure")
    assert [v["version"] for v in detail["versions"]] == ["1", "2", "3"]
    assert [v["aliases"] for v in detail["versions"]] == [[], [CHAMPION], [CHALLENGER]]
    assert [v["metrics"]["test_macro_f1"] for v in detail["versions"]] == [0.6, 0.7, 0.75]
    assert [v["tags"].get("gate") for v in detail["versions"]] == ["passed", "passed", None]
    missing = api.get("/api/models/no_such_model")
    assert missing.status_code == 404 and "no_such_model" in missing.json()["detail"]
    assert api.get("/api/models/bad'name").status_code == 422


def wait_for_version(api: Api, version: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if api.predict().json()["model"]["version"] == version:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still not serving v{version} after {timeout} s")


def test_champion_hot_swaps_after_a_promotion_and_a_rollback_without_failing_requests(fresh_api: Api):
    api, log = fresh_api, fresh_api.decisions()
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            response = api.predict(FRESH[2])
            seen.append((response.status_code, response.json().get("model", {}).get("version")))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        promote(api.registry, log, fleet=FLEET, name=FAILURE, version="3", reason="gate: better", actor="gate")
        assert wait_for_version(api, "3") < 5
        rollback(api.registry, log, name=FAILURE, actor="cli:tests", reason="bad alerts")  # what the CLI runs
        assert wait_for_version(api, "2") < 5
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert seen and all(status == 200 for status, _ in seen)
    assert {version for _, version in seen} == {"2", "3"}
    # Promotion removed the challenger alias: the service stops shadow scoring.
    assert api.get(f"/api/models/{FAILURE}").json()["serving"] == {"champion": "2", "challenger": None}


def test_rollback_over_http_is_admin_only_logged_and_served_at_once(fresh_api: Api):
    api = fresh_api
    assert api.post(f"/api/models/{FAILURE}/rollback", role="operator", json={"reason": "bad"}).status_code == 403
    response = api.post(f"/api/models/{FAILURE}/rollback", role="admin", json={"reason": "false alarms"})
    assert response.status_code == 200, response.text
    decision = response.json()
    assert (decision["action"], decision["from_version"], decision["to_version"]) == ("rollback", "2", "1")
    assert (decision["actor"], decision["reason"], decision["fleet"]) == ("api:admin-client", "false alarms", FLEET)
    assert api.registry.alias_version(FAILURE, CHAMPION) == "1"
    assert api.predict().json()["model"]["version"] == "1"  # this process swapped without waiting for the poller
    again = api.post(f"/api/models/{FAILURE}/rollback", role="admin", json={"reason": "again"})
    assert again.status_code == 409 and "no version before champion v1" in again.json()["detail"]
    assert api.registry.alias_version(FAILURE, CHAMPION) == "1"
    assert api.post("/api/models/no_such_model/rollback", role="admin", json={"reason": "x" * 5}).status_code == 404
    assert api.post(f"/api/models/{FAILURE}/rollback", role="admin", json={"reason": ""}).status_code == 422
    history = api.get(f"/api/models/{FAILURE}/history").json()
    assert [(d["action"], d["from_version"], d["to_version"]) for d in history["decisions"]] == [("rollback", "2", "1")]
    assert api.get("/api/models/no_such_model/history").json() == {"name": "no_such_model", "decisions": []}


def test_rollback_and_history_on_postgres(tmp_path, served):
    with store("postgres", tmp_path) as url, running_api(tmp_path, served, url) as api:
        promote(api.registry, api.decisions(), fleet=FLEET, name=FAILURE, version="3", reason="gate: better", actor="gate")
        response = api.post(f"/api/models/{FAILURE}/rollback", role="admin", json={"reason": "false alarms"})
        assert response.status_code == 200 and response.json()["to_version"] == "2"
        history = api.get(f"/api/models/{FAILURE}/history").json()["decisions"]
        assert [(d["action"], d["to_version"], d["actor"]) for d in history] == [("promoted", "3", "gate"),
                                                                             ("rollback", "2", "api:admin-client")]
        assert api.predict().json()["model"]["version"] == "2"


def test_shadow_comparison_summarizes_the_days_live_traffic(api: Api):
    for device in FRESH:
        assert api.predict(device).status_code == 200
    today = datetime.now(UTC).date()
    body = api.get(f"/api/models/{FAILURE}/shadow", params={"day": today.isoformat()}).json()
    start = datetime.combine(today, datetime.min.time())
    with engine_for(api.settings.store).connect() as conn:
        rows = conn.execute(sa.select(predictions).where(predictions.c.model_name == FAILURE, predictions.c.source == "api",
                                                         predictions.c.created_at >= start)).mappings().all()
    shadowed = [r for r in rows if r["shadow"]]
    assert body["predictions"] == len(rows) >= len(FRESH) and body["shadowed"] == len(shadowed) == len(rows)
    assert body["champion_versions"] == {"2": len(rows)} and body["challenger_versions"] == {"3": len(rows)}
    agree = np.mean([r["predicted_component"] == r["shadow"]["label"] for r in shadowed])
    assert abs(body["label_agreement"] - agree) < 1e-6
    for comp in COMPONENTS:
        diff = np.mean([abs(r["probabilities"][comp] - r["shadow"]["probabilities"][comp]) for r in shadowed])
        assert abs(body["components"][comp]["mean_abs_difference"] - diff) < 1e-5
        assert body["components"][comp]["challenger_alerts"] == sum(r["shadow"]["label"] == comp for r in shadowed)
    empty = api.get(f"/api/models/{FAILURE}/shadow", params={"day": "2020-01-01"}).json()
    assert (empty["predictions"], empty["shadowed"], empty["label_agreement"]) == (0, 0, None)
    assert api.get(f"/api/models/{FAILURE}/shadow", params={"day": "yesterday"}).status_code == 422
    assert date.fromisoformat(api.get(f"/api/models/{FAILURE}/shadow").json()["day"]) == today


def test_not_ready_without_a_champion(tmp_path, served):
    with running_api(tmp_path, served, f"sqlite:///{tmp_path / 'operational.db'}") as api:
        api.registry.delete_alias(FAILURE, CHAMPION)
        api.registry.delete_alias(ANOMALY, CHAMPION)
        deadline = time.monotonic() + 10
        while api.client.get("/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = api.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["detail"] == "no champion loaded"
        response = api.predict()
        assert response.status_code == 503 and "no champion" in response.json()["detail"]


def test_the_registry_probe_sees_every_write_to_a_sqlite_tracking_database(tmp_path):
    import sqlite3

    from iot_mlops.serving.models import sqlite_changes

    database = tmp_path / "mlflow.db"
    assert sqlite_changes("postgresql://host/mlflow") is None
    changed = sqlite_changes(f"sqlite:///{database}")
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE aliases (name TEXT PRIMARY KEY, version INTEGER)")
        conn.execute("INSERT INTO aliases VALUES ('champion', 1)")
    assert changed() is True
    assert changed() is False
    for version in (2, 3):  # same size, maybe the same mtime tick: the header's change counter still moves
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE aliases SET version = ?", (version,))
        assert changed() is True
        assert changed() is False
