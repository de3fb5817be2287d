"""Prediction fixtures: the session's trained and gated Azure PdM state (shared with the training tests)."""

from __future__ import annotations

import pytest

from iot_mlops_tests.training import pipeline


@pytest.fixture(scope="session")
def azure_labelled(tmp_path_factory, azure_backfill, azure_profile) -> pipeline.AzureLabelled:
    return pipeline.azure_labelled(tmp_path_factory, azure_backfill[2], azure_profile)


@pytest.fixture(scope="session")
def azure_trained(tmp_path_factory, azure_labelled, azure_profile) -> pipeline.AzureTrained:
    return pipeline.azure_trained(tmp_path_factory, azure_labelled, azure_profile)
