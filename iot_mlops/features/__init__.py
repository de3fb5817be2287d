"""Features: rolling windows, differences, interactions, errors and maintenance history."""

from iot_mlops.features.compute import FeatureInputError, compute_features
from iot_mlops.features.online import get_device_features

__all__ = ["FeatureInputError", "compute_features", "get_device_features"]
