"""The demo's closing lines: an alerting prediction and the exact commands that send false_positive feedback on it."""

from __future__ import annotations

import re
import shlex
import uuid

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from iot_mlops.cli import app
from iot_mlops.demo import alert_lines
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.serving.app import create_app
from iot_mlops.serving.auth import hash_key
from iot_mlops.serving.config import ServingSettings
from iot_mlops.settings import get_settings
from iot_mlops_tests.opstore.test_store import prediction_frame


def test_the_named_alert_is_the_newest_without_feedback_and_its_printed_commands_are_accepted():
    frame = prediction_frame(8)  # p0, p3, p6 alert; p7 is the newest and raised none
    frame["prediction_id"] = [str(uuid.uuid4()) for _ in range(len(frame))]
    store = StoreResource.from_settings()
    store.predictions().record_batch("water_heaters", frame)
    store.feedback().add(frame["prediction_id"][6], {"type": "correct", "rating": 5, "source": "technician"})

    alert = store.predictions().newest_alert("water_heaters")
    assert alert["prediction_id"] == frame["prediction_id"][3]
    lines = alert_lines(alert)
    assert any(alert["device_id"] in line and "heating_element" in line for line in lines)

    command = next(line for line in lines if line.strip().startswith("iot-mlops feedback add"))
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output

    curl = next(line for line in lines if line.strip().startswith("curl"))
    path = re.search(r"\$API(/api/predictions/[^ ]+/feedback)", curl).group(1)
    body = shlex.split(curl)[-1]
    with TestClient(create_app(get_settings(), ServingSettings(api_keys=f"{hash_key('op-key')}:operator"))) as client:
        posted = client.post(path, content=body, headers={"X-API-Key": "op-key", "content-type": "application/json"})
    assert posted.status_code == 201, posted.text
    types = [r.type for r in store.feedback().list(fleet="water_heaters") if r.prediction_id == alert["prediction_id"]]
    assert types == ["false_positive", "false_positive"]
    assert store.predictions().newest_alert("water_heaters")["prediction_id"] == frame["prediction_id"][0]


def test_without_an_alert_the_summary_says_so():
    assert StoreResource.from_settings().predictions().newest_alert("water_heaters") is None
    assert "No prediction raised an alert" in "\n".join(alert_lines(None))
