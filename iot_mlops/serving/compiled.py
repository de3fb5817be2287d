"""Column transforms replayed in numpy: the one-hot prep and per-column affine steps (impute, standardize).

Each sklearn transform call spends about a millisecond validating its input, and scoring one row with champion and
challenger makes a dozen of them; these replay the same arithmetic in microseconds. The scorer uses them only
after they reproduce the pipeline's own probabilities and alerts on probe rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder


def _identity(transformer) -> bool:
    """sklearn stores `remainder="passthrough"` as a FunctionTransformer without a function."""
    return isinstance(transformer, FunctionTransformer) and transformer.func is None


@dataclass(frozen=True)
class Prep:
    """ColumnTransformer of dense one-hot encoders (unknown categories ignored) and passthrough columns."""

    blocks: list[tuple[str, object]]  # ("onehot", [(column, {category: index}, width)]) or ("passthrough", [columns])

    @classmethod
    def compile(cls, prep: ColumnTransformer, inputs: list[str]) -> Prep | None:
        blocks = []
        for name, transformer, columns in prep.transformers_:
            if transformer == "drop" or len(columns) == 0:
                continue
            columns = [inputs[c] if isinstance(c, (int, np.integer)) else c for c in columns]
            if transformer == "passthrough" or _identity(transformer):
                blocks.append(("passthrough", columns))
            elif (isinstance(transformer, OneHotEncoder) and transformer.drop is None and not transformer.sparse_output
                  and transformer.handle_unknown == "ignore"
                  and all(c is None for c in getattr(transformer, "infrequent_categories_", [None] * len(columns)))):
                encoders = [(column, {value: i for i, value in enumerate(categories)}, len(categories))
                            for column, categories in zip(columns, transformer.categories_)]
                blocks.append(("onehot", encoders))
            else:
                return None
        return cls(blocks)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        parts = []
        for kind, spec in self.blocks:
            if kind == "passthrough":
                parts.append(X[spec].to_numpy(dtype=float, na_value=np.nan))
                continue
            for column, index, width in spec:
                codes = X[column].map(index).to_numpy(dtype=float, na_value=np.nan)
                onehot = np.zeros((len(X), width))
                known = ~np.isnan(codes)
                onehot[np.flatnonzero(known), codes[known].astype(int)] = 1.0
                parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((len(X), 0))


@dataclass(frozen=True)
class Affine:
    """Per column: a missing value becomes `fill`, any other x becomes x * slope + intercept."""

    slope: np.ndarray
    intercept: np.ndarray
    fill: np.ndarray

    @classmethod
    def probe(cls, transform, width: int) -> Affine | None:
        """Read the map off the transform itself; None unless it is affine per column and keeps every column."""
        at = lambda value: np.asarray(transform.transform(np.full((1, width), value)), dtype=float)
        zero, one, other, missing = at(0.0), at(1.0), at(3.5), at(np.nan)
        if any(a.shape != (1, width) for a in (zero, one, other, missing)):
            return None
        slope = one - zero
        if not np.allclose(other, zero + 3.5 * slope, rtol=1e-12, atol=1e-12) or np.isnan(missing).any():
            return None
        return cls(slope[0], zero[0], missing[0])

    def apply(self, P: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(P), self.fill, P * self.slope + self.intercept)
