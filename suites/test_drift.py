"""Drift (DRF-1..3, seed 000 §5: no manual production changes): has anyone changed it by
hand, and does it still match what the repository declares? Run it after every merge:
``pytest --env production -m drift``.
"""

import pytest

from pytest_deployproof.checks import drift

pytestmark = pytest.mark.drift


def test_config_as_deployed(stack, deployproof_run):
    drift.expect_config_as_deployed(deployproof_run, stack)


def test_containers_as_declared(stack, deployproof_run):
    drift.expect_containers_as_declared(deployproof_run, stack)


def test_parity(stack, deployproof_run, parity_inventory):
    drift.expect_parity(deployproof_run, stack, parity_inventory)


def test_layer_in_sync(layer, layer_plan):
    drift.expect_layer_in_sync(layer, layer_plan)
