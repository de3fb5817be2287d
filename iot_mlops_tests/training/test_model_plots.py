"""A failure model's plots reach the asset page as short Markdown images of the files logged to MLflow."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import dagster as dg

from iot_mlops.registry.mlflow_service import artifact_file_url, run_page_url
from iot_mlops.settings import get_settings
from iot_mlops.training.plots import INLINE_MARKDOWN_LIMIT, PLOT_TITLES, plot_markdown
from iot_mlops_tests.training.pipeline import AzureTrained

IMAGE_LINK = re.compile(r"^\[!\[(?P<alt>[^\]]+)\]\((?P<image>[^)\s]+)\)\]\((?P<page>[^)\s]+)\)$")


def test_artifact_file_url_names_the_run_and_path_and_drops_credentials():
    url = artifact_file_url("http://bob:secret@mlflow.example:5000/", "abc123", "plots/roc curve.png")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("http", "mlflow.example", 5000, "/get-artifact")
    assert parse_qs(parts.query) == {"path": ["plots/roc curve.png"], "run_uuid": ["abc123"]}
    assert "secret" not in url


def test_plot_markdown_is_an_image_linking_to_its_page_under_the_inline_limit():
    text = plot_markdown("ROC curves", "http://h/get-artifact?path=roc.png&run_uuid=r", "http://h/#/experiments/1/runs/r")
    match = IMAGE_LINK.match(text)
    assert match and match["image"].endswith("run_uuid=r") and match["page"].endswith("/runs/r")
    assert match["alt"].startswith("ROC curves") and "mlflow ui" in match["alt"]
    assert len(text) < INLINE_MARKDOWN_LIMIT


def test_plot_markdown_with_urls_too_long_to_show_inline_is_a_plain_link():
    long_image = "http://h/get-artifact?path=" + "x" * INLINE_MARKDOWN_LIMIT
    assert plot_markdown("ROC curves", long_image, "http://h/page") == "[ROC curves](http://h/page)"


def test_failure_model_metadata_shows_each_logged_plot_inline(azure_trained: AzureTrained):
    [event] = [e for e in azure_trained.first_run.get_asset_materialization_events()
               if e.asset_key.path[-1] == "failure_model"]
    metadata = event.materialization.metadata
    run_id, ui_url = metadata["mlflow_run_id"].value, get_settings().mlflow_ui_url
    store = azure_trained.registry.registry()
    experiment_id = store.client.get_run(run_id).info.experiment_id
    logged = {a.path for a in store.client.list_artifacts(run_id)}
    for name, title in PLOT_TITLES.items():
        value = metadata[name.removesuffix(".png")]
        assert isinstance(value, dg.MarkdownMetadataValue)
        assert len(value.value) < INLINE_MARKDOWN_LIMIT  # inline on the asset page; no base64 in the event log
        match = IMAGE_LINK.match(value.value)
        assert match and match["alt"].startswith(title)
        assert match["image"] == artifact_file_url(ui_url, run_id, name) and name in logged
        assert match["page"] == run_page_url(ui_url, experiment_id, run_id, name)


def test_confusion_matrices_are_two_per_row_about_as_wide_as_the_curves():
    import numpy as np
    import pandas as pd

    from iot_mlops.training.plots import confusion_figure, curves_figure

    rng = np.random.default_rng(0)
    components = ["a", "b", "c", "d", "e"]
    frame = pd.DataFrame({f"{k}_{c}": rng.integers(0, 2, 50) for c in components for k in ("y", "pred")})
    frame = frame.assign(**{f"p_{c}": rng.random(50) for c in components})
    matrices, curves = confusion_figure(frame, components), curves_figure(frame, components, "pr")
    width, height = matrices.get_size_inches()
    assert width <= curves.get_size_inches()[0] and height > width  # 3 rows of 2, not 5 side by side
    assert [ax.get_title() for ax in matrices.axes if ax.axison] == components
