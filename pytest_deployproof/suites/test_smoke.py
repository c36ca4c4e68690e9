"""Smoke checks (SMK-1, SMK-2): every service of every selected stack is
running (and healthy where it has a healthcheck), and every URL answers as declared.
Observation happens in the fixtures; these tests only judge. When a service is down, the
checks of its endpoints are skipped as "blocked by" its container check, not failed again.
"""

import pytest

from pytest_deployproof.checks.smoke import expect_endpoint_answers, expect_service_running

pytestmark = pytest.mark.smoke


@pytest.mark.deployproof_blocks("containers")
def test_service_running(stack, service, service_state):
    expect_service_running(stack, service, service_state)


@pytest.mark.deployproof_only(health=False)
def test_endpoint_answers(stack, endpoint, endpoint_probe):
    expect_endpoint_answers(stack, endpoint_probe)
