"""The celery app of the workers: dagster-celery's step task, configured from the same settings as the executor.

    celery -A iot_mlops.scaling_worker worker -Q "${IOT_MLOPS_CELERY_QUEUE:-dagster}" -n w1@%h -c 1 --prefetch-multiplier=1
"""

from __future__ import annotations

from celery import Celery
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from iot_mlops.scaling import CelerySettings


def make_worker_app(settings: CelerySettings) -> Celery:
    """dagster-celery's app with the executor's broker, backend and default queue."""
    executor = CeleryExecutor.for_cli(broker=settings.broker, backend=settings.backend,
                                      config_source=settings.executor_config()["config_source"])
    return make_app(executor.app_args())


app = make_worker_app(CelerySettings())
execute_plan = create_task(app)
