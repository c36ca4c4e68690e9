"""E2E-4: on SIGTERM each service stops within its grace period, with a clean exit code.

It stops the running containers (one at a time) and starts them again: run it
against staging, not production.
"""

from pytest_deployproof.checks import e2e


def test_stops_on_sigterm(stack, service, sigterm_stops):
    e2e.expect_stops_on_sigterm(stack, service.name, sigterm_stops)
