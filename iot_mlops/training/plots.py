"""Evaluation plots: confusion matrices, PR and ROC curves, feature importance."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve  # noqa: E402


def confusion_figure(predictions: pd.DataFrame, components: list[str]) -> Figure:
    """One 2x2 confusion matrix per component (predictions has y_<c> and pred_<c>)."""
    fig, axes = plt.subplots(1, len(components), figsize=(3.2 * len(components), 3.2), squeeze=False)
    for ax, comp in zip(axes[0], components):
        matrix = confusion_matrix(predictions[f"y_{comp}"], predictions[f"pred_{comp}"], labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center", color="black")
        ax.set_xticks([0, 1], ["ok", "fails"])
        ax.set_yticks([0, 1], ["ok", "fails"])
        ax.set_title(comp)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("actual")
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


def figure_markdown(fig: Figure, title: str) -> str:
    """A figure as an inline PNG in Markdown, for Dagster metadata."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
