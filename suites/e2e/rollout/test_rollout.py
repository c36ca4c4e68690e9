"""DEP-10 / E2E-3: zero downtime, measured.

Under ``--deploy``, deployproof requests the stack's http endpoints every
``rollout.interval_ms`` while ``docker compose up`` replaces its containers;
this test fails when more requests failed than ``rollout.budget`` (default 0).
The report says how many failed, their share of all requests and the longest
time without a good answer.
"""

import pytest

from pytest_deployproof.checks import e2e

pytestmark = pytest.mark.deployproof_rollout


def test_rollout_within_budget(stack, deployment, record_property):
    if deployment is not None and deployment.rollout is not None:
        figures = deployment.rollout
        record_property("rollout_requests", figures.sent)
        record_property("rollout_failed", figures.failed)
        record_property("rollout_failed_percent", round(figures.failed_share, 1))
        record_property("rollout_longest_gap_s", round(figures.longest_gap_s, 3))
        print(f"rollout of {stack.name} {deployment.version}: {figures.describe()}")
    e2e.expect_rollout_within_budget(stack, deployment)
