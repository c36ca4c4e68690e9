"""Smoke checks (seed 002 smoke.sh): every service of every selected stack is
running (and healthy where it has a healthcheck), and every endpoint answers
as declared. Observation happens in the fixtures; these tests only judge.
"""

import pytest

from pytest_deployproof.checks.smoke import expect_endpoint_answers, expect_service_running

pytestmark = pytest.mark.smoke


def test_service_running(stack, service, service_state):
    expect_service_running(stack, service, service_state)


def test_endpoint_answers(stack, endpoint, endpoint_probe):
    expect_endpoint_answers(stack, endpoint_probe)
