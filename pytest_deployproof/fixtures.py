"""Public fixtures: what a check or a user's test asks for.

Observation happens here, in fixture setup, on purpose: when Docker or a host
cannot be reached the fixture raises :class:`~pytest_deployproof.errors.Inconclusive`
and pytest reports an *error*, while a deployment that is observed and found
wrong makes the test body *fail*. The two mean different things to an operator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .errors import Inconclusive
from .stash import BLOCKED_KEY, RUN_KEY, SETTINGS_KEY
from .targets import Target, target_of
from .verdicts import CheckFailure, Verdict

if TYPE_CHECKING:  # plugin.py registers this module in every pytest run: keep it light
    from .deploy.deployer import Deployment
    from .inventory.model import Host, Inventory, Stack
    from .observe.databases import DatabaseResult
    from .observe.docker_engine import HostEngine
    from .observe.drift import ConfigSeen, ContainersSeen, LayerPlan, ParitySeen, ServicesSeen
    from .observe.probes import ProbeResult
    from .observe.stackfiles import StackFiles
    from .orchestrators.containers import ServiceState
    from .reach.hosts import DiskUsage
    from .run import Run

__all__ = [
    "compose_config",
    "database",
    "database_probe",
    "deployed_config",
    "deployment",
    "deployproof_run",
    "deployproof_target",
    "disk_usage",
    "endpoint",
    "endpoint_probe",
    "host_engine",
    "inventory_host",
    "layer",
    "layer_plan",
    "parity_inventory",
    "parity_versions",
    "running_containers",
    "service",
    "service_state",
    "stack",
    "stack_files",
]


def _needs_environment(request: pytest.FixtureRequest) -> None:
    __tracebackhide__ = True
    settings = request.config.stash[SETTINGS_KEY]
    try:
        from .inventory.load import discover  # noqa: PLC0415

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
    return deployproof_run.observations.service_state(deployproof_target)


def _services_behind(stack: Stack, declared: str | None) -> list[str]:
    """The services an endpoint or database needs up: the one it names, else the critical
    ones, else all."""
    if declared:
        return [declared]
    critical = [name for name, service in stack.services.items() if service.critical]
    return critical or sorted(stack.services)


def _skip_if_blocked(request: pytest.FixtureRequest, reason: str | None) -> None:
    """Skip as blocked: the verdict is BLOCKED (the report says so), not merely skipped."""
    __tracebackhide__ = True
    if reason:
        request.node.stash[BLOCKED_KEY] = reason
        pytest.skip(reason)


def _record_attempts(request: pytest.FixtureRequest, attempts: int, elapsed_s: float) -> None:
    """Visible retries (BYD-3): every probe's attempts and time reach the reports, passes too."""
    request.node.user_properties.append(("deployproof_attempts", attempts))
    request.node.user_properties.append(("deployproof_elapsed_s", round(elapsed_s, 3)))


@pytest.fixture
def endpoint_probe(
    request: pytest.FixtureRequest, deployproof_run: Run, deployproof_target: Target
) -> ProbeResult:
    """This test's endpoint, probed with retries (batched with the other endpoints).

    Skipped as "blocked by" the container check when the service behind it is down.
    """
    run, target = deployproof_run, deployproof_target
    stack = run.stack(target.stack or "")
    endpoint = run.observations.endpoint(target)
    _skip_if_blocked(
        request, run.blocking.by_containers(stack, _services_behind(stack, endpoint.service))
    )
    result = run.observations.probe(target)
    _record_attempts(request, len(result.attempts), result.elapsed_s)
    return result


@pytest.fixture
def database_probe(
    request: pytest.FixtureRequest, deployproof_run: Run, deployproof_target: Target
) -> DatabaseResult:
    """This test's database, connected to as the stack's own user, with retries."""
    run, target = deployproof_run, deployproof_target
    stack = run.stack(target.stack or "")
    database = stack.databases[target.name or ""]
    _skip_if_blocked(
        request, run.blocking.by_containers(stack, _services_behind(stack, database.service))
    )
    result = run.observations.database(target)
    _record_attempts(request, result.attempts, result.elapsed_s)
    return result


@pytest.fixture
def stack_files(deployproof_run: Run, deployproof_target: Target) -> StackFiles:
    """The stack's compose file, env file and ``docker compose config``, read on its host."""
    return deployproof_run.observations.stack_files(deployproof_target.stack or "")


@pytest.fixture
def compose_config(
    request: pytest.FixtureRequest, deployproof_run: Run, deployproof_target: Target
) -> StackFiles:
    """Like ``stack_files``, for checks that need Compose to accept the files: skipped as
    blocked by the compose check when it does not, or failing with Compose's reason."""
    run = deployproof_run
    stack = run.stack(deployproof_target.stack or "")
    _skip_if_blocked(request, run.blocking.by_compose(stack))
    files = run.observations.stack_files(stack.name)
    if files.config is None:
        pytest.fail(f"stack {stack.name}: {files.problem}", pytrace=False)
    return files


@pytest.fixture
def host_engine(deployproof_run: Run, deployproof_target: Target) -> HostEngine:
    """The Docker engine facts (networks, images) of this test's host."""
    return deployproof_run.observations.engine(deployproof_target.host or "")


@pytest.fixture
def target_readiness(deployproof_run: Run, deployproof_target: Target) -> str | None:
    """Why this test's stack's host cannot run its ``target:`` (Compose v2; a swarm
    manager), or ``None``."""
    run = deployproof_run
    return run.observations.readiness(run.stack(deployproof_target.stack or ""))


@pytest.fixture
def disk_usage(deployproof_run: Run, deployproof_target: Target) -> DiskUsage:
    """Free space of this test's host on its ``data_path`` (``df`` through testinfra)."""
    return deployproof_run.observations.disk_usage(deployproof_target.host or "")


@pytest.fixture
def inventory_host(deployproof_run: Run, deployproof_target: Target) -> Host:
    """The inventory's model of this test's host (``host`` is the testinfra host)."""
    return deployproof_run.inventory.hosts[deployproof_target.host or ""]


@pytest.fixture
def layer_plan(
    request: pytest.FixtureRequest, deployproof_run: Run, deployproof_target: Target
) -> LayerPlan:
    """This test's layer, planned by its engine (every layer of the run concurrently, once).
    An engine that fails is inconclusive; a compose layer is judged stack by stack."""
    run = deployproof_run
    layer = run.inventory.layers[deployproof_target.layer or ""]
    from .observe.drift import plan_command  # noqa: PLC0415 - heavy: see the imports above

    if plan_command(layer) is None:
        pytest.skip(f"layer {layer.name} is {layer.engine}: its stacks are checked one by one")
    _skip_if_blocked(request, run.blocking.by_layer(layer))
    plan = run.observations.layer_plan(layer)
    if plan.verdict == "error":
        raise Inconclusive(f"layer {layer.name}: {layer.engine} plan failed: {plan.detail}")
    return plan


@pytest.fixture
def deployed_config(deployproof_run: Run, deployproof_target: Target) -> ConfigSeen:
    """The stack as deployproof last deployed it, against its files and containers now."""
    run = deployproof_run
    return run.observations.deployed_config(run.stack(deployproof_target.stack or ""))


@pytest.fixture
def running_containers(
    deployproof_run: Run, deployproof_target: Target
) -> ContainersSeen | ServicesSeen:
    """The stack's rendered services, its running containers and their Compose hashes (on
    a swarm: its services' specs)."""
    run = deployproof_run
    return run.observations.running_containers(run.stack(deployproof_target.stack or ""))


@pytest.fixture
def parity_versions(
    deployproof_run: Run, deployproof_target: Target, parity_inventory: Inventory
) -> ParitySeen:
    """The stack here and in the ``--parity`` environment: whether it exists, both versions."""
    run = deployproof_run
    return run.observations.parity(run.stack(deployproof_target.stack or ""), parity_inventory)


@pytest.fixture(scope="session")
def parity_inventory(request: pytest.FixtureRequest, deployproof_run: Run) -> Inventory:
    """The other environment of ``--parity`` (DRF-4); tests that need it skip without it."""
    from .inventory.load import InventoryError, load_environment  # noqa: PLC0415

    value = request.config.getoption("deployproof_parity", None)
    here = deployproof_run.inventory.environment
    names = [n.strip() for n in (value or "").split(",") if n.strip() and n.strip() != here]
    if not names:
        pytest.skip("parity needs --parity ENV: the environment to compare with")
    try:
        return load_environment(deployproof_run.settings.inventory.value, names[0])
    except InventoryError as exc:
        raise pytest.UsageError(f"--parity {value}: {exc}") from None


@pytest.fixture(scope="session")
def deployment(deployproof_run: Run, stack: Stack) -> Iterator[Deployment | None]:
    """The deploy of this test's stack under ``--deploy VERSION`` (``None`` otherwise).

    Session-scoped per stack: the stack is deployed once before its first test and, after
    its last, the outcome is recorded and a failed version rolled back and verified.
    """
    run = deployproof_run
    version = run.settings.deploy.value
    if version is None:
        yield None
        return
    from .deploy.deployer import Deployer, DeployError  # noqa: PLC0415 - heavy: see the imports above
    from .ledger import DeployRecord  # noqa: PLC0415

    deployer = Deployer(run, stack, version)
    error: str | None = None
    try:
        deployed = deployer.deploy()
        run.ledger.summaries += [f"{stack.name}: {note}" for note in deployed.notes]
        yield deployed
    except DeployError as exc:
        error = str(exc)
        raise
    except BaseException as exc:  # Ctrl-C, SIGTERM, a lost link, a full disk: never a success
        error = f"the deploy was interrupted: {_interruption(exc)}"
        if isinstance(exc, Exception) and not isinstance(exc, Inconclusive):
            # A fact about the deploy (lease lost, disk full): its verdict, not a traceback.
            raise DeployError(error) from exc
        raise
    finally:
        failures = run.ledger.failures_of(stack.name)
        if run.ledger.interrupted:
            failures.append(CheckFailure("the run was interrupted", Verdict.FAILED))
        summary = deployer.finish(
            failures, deploy_error=error, evidence=run.ledger.passed.get(stack.name, 0)
        )
        run.ledger.summaries.append(summary)
        done = deployer.deployment
        run.ledger.records.append(
            DeployRecord(
                stack=stack.name,
                version=version,
                previous=done.previous,
                outcome=done.outcome,
                rollback=done.rollback,
                backup=done.backup,
                message=summary,
                phases=tuple(done.phases),
                finished=time.time(),
            )
        )
        run.observations.invalidate(stack)
        if deployer.signals and not run.ledger.interrupted:
            raise KeyboardInterrupt("interrupted while the deploy was being recorded")


def _interruption(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT or SIGTERM"
    if isinstance(exc, Inconclusive):
        return f"inconclusive: {exc}"
    return f"{type(exc).__name__}: {exc}"


class DeployFirst:
    """Registered as a plugin under --deploy only: an autouse fixture costs every test of
    the run (measured: ~0.3 ms each), so runs that deploy nothing do not carry it."""

    @pytest.fixture(autouse=True)
    def _deployproof_deploy_first(self, request: pytest.FixtureRequest) -> None:
        """Every test of a stack runs against the deployed version, except its preflight
        gates: they run first, and a failed one refuses the deploy."""
        if request.node.get_closest_marker("preflight"):
            return
        target = target_of(request.node)
        if target is not None and target.stack:
            request.getfixturevalue("deployment")


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
