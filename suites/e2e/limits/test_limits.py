"""The running containers carry the cpu and memory limits the compose file declares."""

from pytest_deployproof.checks import e2e


def test_limits_applied(stack, service, compose_config, stack_containers):
    declared = compose_config.services.get(service.name, {})
    e2e.expect_limits_applied(stack, service.name, declared, stack_containers)
