"""Drift (DRF-1..3: no manual production changes): has anyone changed it by
hand, and does it still match what the repository declares? Run it after every merge:
``pytest --env production -m drift``.
"""

import pytest

from pytest_deployproof.checks import drift

pytestmark = pytest.mark.drift


def test_config_as_deployed(stack, deployed_config):
    drift.expect_config_as_deployed(stack, deployed_config)


def test_containers_as_declared(stack, running_containers, stack_files):
    drift.expect_containers_as_declared(stack, running_containers, stack_files.masker)


def test_parity(stack, parity_versions):
    drift.expect_parity(stack, parity_versions)


def test_layer_in_sync(layer, layer_plan):
    drift.expect_layer_in_sync(layer, layer_plan)
