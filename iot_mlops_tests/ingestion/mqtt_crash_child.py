"""An MQTT ingester that kills itself at a landing step: `python -m iot_mlops_tests.ingestion.mqtt_crash_child PROFILE FOLDER HOST PORT STEP N`.

It exits with CRASHED the N-th time the landing reaches STEP ("none": never); it imports little, so it starts fast.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

CRASHED = 77


def main(profile_file: str, folder: str, host: str, port: str, step: str, nth: str) -> None:
    from iot_mlops.ingestion.mqtt import MqttIngester, MqttOptions
    from iot_mlops.profiles import load_profile

    reached: Counter = Counter()

    def crash(name: str) -> None:
        reached[name] += 1
        if name == step and reached[name] == int(nth):
            os._exit(CRASHED)

    options = MqttOptions(host=host, port=int(port), flush_seconds=0.2, max_batch=6, idle_timeout=1.0)
    MqttIngester(load_profile(Path(profile_file)), Path(folder), options, log=lambda line: print(line, flush=True), step=crash).run()


if __name__ == "__main__":
    main(*sys.argv[1:])
