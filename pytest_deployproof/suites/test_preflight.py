"""Preflight gates (PRE-1..8): what must hold before a deploy touches
anything. Each gate is its own test, so a report says exactly which one stopped a stack.
Observation happens in the fixtures (on the stack's host, through testinfra and Docker);
these tests only judge.
"""

import pytest

from pytest_deployproof.checks import preflight

pytestmark = pytest.mark.preflight


@pytest.mark.deployproof_blocks("compose")
def test_compose_parses(stack, stack_files):
    preflight.expect_compose_parses(stack, stack_files)


def test_target_ready(stack, target_readiness):
    preflight.expect_target_ready(stack, target_readiness)


def test_env_file_complete(stack, stack_files):
    preflight.expect_env_complete(stack, stack_files)


def test_no_literal_secrets(stack, stack_files):
    preflight.expect_no_literal_secrets(stack, stack_files)


def test_no_build_directive(stack, compose_config):
    preflight.expect_no_build(stack, compose_config)


def test_images_pinned(stack, compose_config, deployproof_run):
    preflight.expect_images_pinned(
        stack, compose_config, deployproof_run.inventory.image_tag_pattern
    )


def test_resource_limits(stack, compose_config):
    preflight.expect_limits_declared(stack, compose_config)


def test_networks_exist(stack, compose_config, host_engine):
    preflight.expect_networks_exist(stack, compose_config, host_engine)


def test_images_available(stack, compose_config, host_engine):
    preflight.expect_images_available(stack, compose_config, host_engine)


def test_disk_free(host, inventory_host, disk_usage):
    preflight.expect_disk_free(inventory_host, disk_usage)
