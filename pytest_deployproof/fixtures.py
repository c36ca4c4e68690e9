"""Public fixtures: what a check or a user's test asks for.

Observation happens here, in fixture setup, on purpose: when Docker or a host
cannot be reached the fixture raises :class:`~pytest_deployproof.errors.Inconclusive`
and pytest reports an *error*, while a deployment that is observed and found
wrong makes the test body *fail*. The two mean different things to an operator.
"""

from __future__ import annotations

import pytest

from .containers import ServiceState
from .params import Target, target_of
from .probes import ProbeResult
from .run import Run
from .stash import RUN_KEY, SETTINGS_KEY

__all__ = [
    "database",
    "deployproof_run",
    "deployproof_target",
    "endpoint",
    "endpoint_probe",
    "layer",
    "service",
    "service_state",
    "stack",
]


def _needs_environment(request: pytest.FixtureRequest) -> None:
    __tracebackhide__ = True
    settings = request.config.stash[SETTINGS_KEY]
    try:
        from .inventory import discover  # noqa: PLC0415

        known = ", ".join(discover(settings.inventory.value)) or "(none)"
    except Exception:
        known = "(no inventory found)"
    pytest.fail(
        f"{request.node.nodeid} checks a deployment, so it needs an environment: "
        f"pass --env NAME (known in {settings.inventory.value}: {known})",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def deployproof_run(request: pytest.FixtureRequest) -> Run:
    """The deployproof run of this process: inventory, selection and observers."""
    run = request.config.stash.get(RUN_KEY, None)
    if run is None:
        _needs_environment(request)
    assert run is not None
    return run


@pytest.fixture
def deployproof_target(request: pytest.FixtureRequest) -> Target:
    """Which environment, layer, host, stack and check this test is about."""
    target = target_of(request.node)
    if target is None:
        pytest.fail(
            f"{request.node.nodeid} is not parametrised by deployproof: take `stack`, "
            "`service`, `endpoint`, `database`, `layer` or `host` as an argument",
            pytrace=False,
        )
    return target


@pytest.fixture
def service_state(deployproof_run: Run, deployproof_target: Target) -> ServiceState:
    """The containers of this test's service, observed until they settle (or the deadline)."""
    return deployproof_run.service_state(deployproof_target)


@pytest.fixture
def endpoint_probe(deployproof_run: Run, deployproof_target: Target) -> ProbeResult:
    """This test's endpoint, probed with retries (batched with the other endpoints)."""
    return deployproof_run.probe(deployproof_target)


# Stand-ins for the parameters. With --env, deployproof parametrises these
# names directly, which shadows the fixtures; without it, a test that asks
# for one is told what is missing instead of "fixture not found".


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> None:
    """A stack of the selection (parametrised: one test per selected stack)."""
    _needs_environment(request)


@pytest.fixture
def service(request: pytest.FixtureRequest) -> None:
    """A service of a selected stack (one test per service)."""
    _needs_environment(request)


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> None:
    """An endpoint of a selected stack (one test per endpoint)."""
    _needs_environment(request)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> None:
    """A database of a selected stack (one test per database)."""
    _needs_environment(request)


@pytest.fixture
def layer(request: pytest.FixtureRequest) -> None:
    """A layer of the selection (one test per layer, in apply order)."""
    _needs_environment(request)
