"""Evaluation plots: confusion matrices, PR and ROC curves, feature importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve  # noqa: E402

# Dagster's asset page shows a Markdown metadata value inline only when shorter than this (MetadataEntry.tsx).
INLINE_MARKDOWN_LIMIT = 1000

# Each logged plot of a failure model and its title in metadata.
PLOT_TITLES = {
    "confusion_matrix.png": "Confusion matrices",
    "precision_recall.png": "Precision-recall curves",
    "roc.png": "ROC curves",
    "feature_importance.png": "Feature importance",
}


def confusion_figure(predictions: pd.DataFrame, components: list[str]) -> Figure:
    """One 2x2 confusion matrix per component (predictions has y_<c> and pred_<c>), two per row.

    Two per row keep the image about as wide as the curves (500 px), so the asset page shows it whole.
    """
    columns = min(2, len(components))
    rows = -(-len(components) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat[len(components):]:
        ax.set_axis_off()
    for ax, comp in zip(axes.flat, components):
        matrix = confusion_matrix(predictions[f"y_{comp}"], predictions[f"pred_{comp}"], labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
        ax.set_xticks([0, 1], ["ok", "fails"])
        ax.set_yticks([0, 1], ["ok", "fails"])
        ax.set_title(comp)
        ax.set_xlabel("predicted")
    for row in axes:
        row[0].set_ylabel("actual")
    fig.tight_layout()
    return fig


def curves_figure(predictions: pd.DataFrame, components: list[str], kind: str) -> Figure:
    """Precision-recall (kind='pr') or ROC (kind='roc') curves, one line per component."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for comp in components:
        truth, prob = predictions[f"y_{comp}"], predictions[f"p_{comp}"]
        if truth.nunique() < 2:
            continue
        if kind == "pr":
            precision, recall, _ = precision_recall_curve(truth, prob)
            ax.plot(recall, precision, label=comp)
        else:
            fpr, tpr, _ = roc_curve(truth, prob)
            ax.plot(fpr, tpr, label=comp)
    ax.set_xlabel("recall" if kind == "pr" else "false positive rate")
    ax.set_ylabel("precision" if kind == "pr" else "true positive rate")
    ax.set_title("Precision-recall" if kind == "pr" else "ROC")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the most important features."""
    shown = importance.sort_values(ascending=True).tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(shown) + 1))
    ax.barh(shown.index, shown.to_numpy())
    ax.set_xlabel("drop in macro F1 when permuted")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return fig


def plot_markdown(title: str, image_url: str, page_url: str) -> str:
    """A logged plot as Markdown short enough for Dagster's asset page to render inline: the image, linking to its page.

    The asset page renders a Markdown entry only under INLINE_MARKDOWN_LIMIT characters (longer ones, such as a
    base64 PNG, sit behind "[Show Markdown]"), so the image is a URL (MLflow's server sends the logged file); its
    alt text says what to start when that server is not running. URLs too long for that leave a plain link.
    """
    text = f"[![{title} (start mlflow ui to see it)]({image_url})]({page_url})"
    return text if len(text) < INLINE_MARKDOWN_LIMIT else f"[{title}]({page_url})"
