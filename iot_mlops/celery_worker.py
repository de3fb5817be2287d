"""The celery app the workers run: dagster-celery's step task, with broker, backend and queue from CelerySettings.

    celery -A iot_mlops.celery_worker worker -Q "${IOT_MLOPS_CELERY_QUEUE:-dagster}" -n w1@%h -c 1 --prefetch-multiplier=1
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from iot_mlops.settings import CelerySettings

settings = CelerySettings()
app = make_app(CeleryExecutor.for_cli(settings.broker, settings.backend,
                                     config_source=settings.executor_config()["config_source"]).app_args())
execute_plan = create_task(app)
