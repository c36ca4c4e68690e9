"""Health probes (SMK-3, SMK-4): service health endpoints answer within their latency
budget, and each stack's databases accept a connection as the stack's own user.
"""

import pytest

from pytest_deployproof.checks.health import expect_database_answers
from pytest_deployproof.checks.smoke import expect_endpoint_answers

pytestmark = pytest.mark.health


@pytest.mark.deployproof_only(health=True)
def test_health_endpoint(stack, endpoint, endpoint_probe):
    expect_endpoint_answers(stack, endpoint_probe)


def test_database_answers(stack, database, database_probe):
    expect_database_answers(stack, database_probe)
