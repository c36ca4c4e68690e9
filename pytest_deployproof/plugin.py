"""The pytest plugin: hooks only. Each hook hands its work to the module that owns it.

Nothing happens until an environment is chosen (``--env``, ``DEPLOYPROOF_ENV``
or the ``deployproof_env`` ini key): installing the plugin into a project
without an inventory changes nothing there, and testinfra's own ``host``
parametrisation is left alone.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import e2e, fixtures, ssh
from .changes import ChangeError, changed_files, impact_of, repository_root
from .deploy import DeployError
from .errors import Inconclusive
from .hosts import is_ssh, testinfra_host
from .inventory import InventoryError, discover, load_environment
from .params import (
    BLOCKS_MARK,
    CHILD_KINDS,
    ONLY_MARK,
    PARAM_NAMES,
    ROLLOUT_MARK,
    TARGET_MARK,
    build_rows,
    deploy_order,
    target_of,
)
from .reporting import Reporter
from .run import Run
from .selection import SelectionError, select
from .settings import Settings, add_options, resolve
from .signals import restore_terminate, terminate_as_interrupt
from .stash import RUN_KEY, SETTINGS_KEY
from .xdist_groups import TargetGroups, make_scheduler

MARKERS = {
    "preflight": "gate checked before anything is deployed (PRE)",
    "smoke": "a deployed stack runs and answers (SMK)",
    "health": "service health endpoints answer within budget (SMK-3)",
    "e2e": "end-to-end user journeys against a deployed stack (E2E)",
    "drift": "running state matches what the repository declares (DRF)",
    "deploy": "needs --deploy: exercises the deploy fixture (DEP)",
    TARGET_MARK: "deployproof_target(target): set by deployproof on the tests it parametrises",
    ONLY_MARK: "deployproof_only(**attributes): parametrise only over items with these values, "
    "e.g. deployproof_only(health=True)",
    ROLLOUT_MARK: "deployproof_rollout: this test judges the downtime of the stack's rollout "
    "under --deploy, so deployproof probes its endpoints while `compose up` runs",
    BLOCKS_MARK: "deployproof_blocks(observation): this check reports 'containers' or 'compose'; "
    "checks that need it are skipped as blocked by it when it fails",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.pluginmanager.register(fixtures, "deployproof-fixtures")
    config.pluginmanager.register(e2e, "deployproof-e2e")
    settings = resolve(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.deploy.value is not None and not settings.active:
        raise pytest.UsageError("--deploy needs --env: which environment's stacks to deploy?")
    if settings.deploy.value is not None and _spreads_stacks(config):
        raise pytest.UsageError(
            "--deploy with -n needs --dist loadgroup, so each stack is deployed once, "
            "by the one worker that runs all of its tests"
        )
    if settings.active:
        config.stash[RUN_KEY] = _start_run(config, settings)
        if settings.deploy.value is not None:
            config.pluginmanager.register(fixtures.DeployFirst(), "deployproof-deploy-first")
        config.pluginmanager.register(Reporter(config), "deployproof-reporting")
        _check_suites(config)
    if settings.deploy.value is not None:
        terminate_as_interrupt()  # a cancelled CI job rolls back like Ctrl-C (DEP-2)


def _suites(config: pytest.Config) -> tuple[str, ...]:
    values = config.getoption("deployproof_suites", None) or []
    return tuple(s.strip() for value in values for s in value.split(",") if s.strip())


def _check_suites(config: pytest.Config) -> None:
    asked = _suites(config)
    if not asked:
        return
    folder = config.rootpath / "suites" / "e2e"
    known = e2e.e2e_suites(config.rootpath) if folder.is_dir() else []
    unknown = [s for s in asked if s != "all" and s not in known]
    if unknown:
        raise pytest.UsageError(
            f"--suite: no E2E suite {', '.join(map(repr, unknown))} in {folder}; "
            f"known are: {', '.join(known) or '(none)'}"
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if RUN_KEY not in config.stash:
        return None
    return True if e2e.ignored_by_suites(collection_path, _suites(config)) else None


def _spreads_stacks(config: pytest.Config) -> bool:
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and getattr(config.option, "dist", "no") not in ("loadgroup", "no")


def _start_run(config: pytest.Config, settings: Settings) -> Run:
    assert settings.env.value is not None
    try:
        inventory = load_environment(
            settings.inventory.value, settings.env.value, settings.ansible_inventory.value
        )
        impact = None
        if settings.changed_since.value:
            file = discover(settings.inventory.value)[settings.env.value]
            repo = inventory.repo or repository_root(file.parent)
            impact = impact_of(inventory, changed_files(repo, settings.changed_since.value))
        selection = select(
            inventory,
            stacks=settings.stacks.value,
            layers=settings.layers.value,
            hosts=settings.hosts.value,
            impact=impact,
        )
    except (InventoryError, SelectionError) as exc:
        raise pytest.UsageError(str(exc)) from None
    except ChangeError as exc:
        raise pytest.UsageError(f"--changed-since: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    known = workerinput.get("deployproof_secrets") if workerinput is not None else None
    return Run(settings, selection, worker=workerinput is not None, known_secrets=known)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: hand each worker the secrets to mask (read once, here)."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is not None:
        node.workerinput["deployproof_secrets"] = list(run.secrets().values)


def pytest_unconfigure(config: pytest.Config) -> None:
    restore_terminate()
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.close()
    ssh.close_all()  # this process's ssh master connections (atexit would, later)
    if config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.unregister(fixtures)
    for name in ("deployproof-reporting", "deployproof-e2e", "deployproof-deploy-first"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash.get(SETTINGS_KEY, None)
    run = config.stash.get(RUN_KEY, None)
    if settings is None or run is None:
        return []
    selection = run.selection
    lines = [
        f"deployproof: env {settings.env}, inventory {settings.inventory}",
        f"deployproof: {len(selection.stacks)} of {len(run.inventory.stacks)} stacks, "
        f"{len(selection.layers)} layers, {len(selection.hosts)} hosts selected",
    ]
    for name in ("stacks", "layers", "hosts", "changed_since"):
        setting = getattr(settings, name)
        if setting.value:
            shown = ",".join(setting.value) if isinstance(setting.value, tuple) else setting.value
            lines.append(f"deployproof: {name.replace('_', '-')} {shown} (from {setting.source})")
    if selection.impact is not None:
        lines.append(f"deployproof: change set: {selection.impact.describe()}")
    if run.probing_ahead:
        lines.append(
            "deployproof: endpoints are probed by a separate process while the tests run "
            f"(more than {run.inventory.probes.concurrency} in the selection)"
        )
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {name for name in PARAM_NAMES if name in metafunc.fixturenames}
    run = metafunc.config.stash.get(RUN_KEY, None)
    if not wanted or run is None:
        return
    if wanted & set(CHILD_KINDS) and "stack" not in wanted:
        # A service/endpoint/database test is also a test of its stack: making
        # `stack` a parameter of it too keeps all of a stack's tests together,
        # where a per-stack fixture (the deploy) sets up and tears down once.
        metafunc.fixturenames.append("stack")
        wanted.add("stack")
    if "host" in wanted and "_testinfra_host" in metafunc.fixturenames:
        # We give `host` its value (the stack's testinfra host): testinfra must
        # not parametrise its own `_testinfra_host` behind it as well.
        metafunc.fixturenames.remove("_testinfra_host")
    argnames = sorted(wanted)
    only: dict[str, Any] = {}
    for mark in metafunc.definition.iter_markers(ONLY_MARK):
        only.update(mark.kwargs)
    rows = build_rows(run.selection, wanted, _testinfra_host(run), only)
    params: list[Any] = []
    for row in rows:
        # No xdist_group mark: under --dist loadgroup our scheduler groups by target id.
        marks = [getattr(pytest.mark, TARGET_MARK)(row.target)]
        values = [row.values[name] for name in argnames]
        params.append(pytest.param(*values, id=row.target.id, marks=marks))
    if not params:
        reason = run.selection.empty_reason()
        children = sorted(wanted & set(CHILD_KINDS))
        if run.selection.stacks and children:
            reason = f"the selected stacks declare no {children[0]}"
            reason += f" with {only}" if only else ""
        skip = pytest.mark.skip(reason=reason)
        params = [pytest.param(*[None] * len(argnames), id="none-selected", marks=skip)]
    metafunc.parametrize(argnames, params, scope="session")


def _testinfra_host(run: Run) -> Any:
    hosts = run.inventory.hosts

    def host_object(name: str) -> Any:
        return testinfra_host(hosts[name])  # no connection until the test runs a command

    return host_object


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under --dist loadgroup, group by stack or host ourselves (see xdist_groups.py)."""
    run = config.stash.get(RUN_KEY, None)
    if run is None or config.getvalue("dist") != "loadgroup":
        return None
    return make_scheduler(config, log, TargetGroups(run.selection, run.settings.group_by))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None and run.deploying:
        items[:] = deploy_order(items)


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    # Before -m deselects: a test of suites/e2e/<name>/ is an e2e check.
    if e2e.suite_of(item.path) and not item.get_closest_marker("e2e"):
        item.add_marker(pytest.mark.e2e)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Before collection, so the prober's interpreter starts while pytest collects. Not on
    # an xdist controller (it runs no tests) nor for --collect-only (it probes nothing).
    run = session.config.stash.get(RUN_KEY, None)
    config = session.config
    if (
        run is not None
        and run.probes_ahead()
        and not config.option.collectonly
        and not config.pluginmanager.has_plugin("dsession")
    ):
        run.start_prober()


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k/-m deselection: a check that will not run blocks nothing.
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None:
        run.plan(session.items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test given an ssh host's testinfra ``host`` errors as INCONCLUSIVE, before its body
    runs, when the host cannot be reached (testinfra would raise mid-test, a failure)."""
    run = item.config.stash.get(RUN_KEY, None)
    target = target_of(item)
    if run is None or target is None or not target.host:
        return
    host = run.inventory.hosts[target.host]
    if "host" in getattr(item, "fixturenames", ()) and is_ssh(host):
        ssh.connection(host).open()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    inconclusive = call.excinfo is not None and call.excinfo.errisinstance(Inconclusive)
    if call.excinfo is not None and call.excinfo.errisinstance((Inconclusive, DeployError)):
        # Facts about the infrastructure or the deploy, not bugs in the plugin: no traceback.
        label = "INCONCLUSIVE" if inconclusive else "DEPLOY FAILED"
        report.longrepr = f"{label}: {call.excinfo.value}"
    run = item.config.stash.get(RUN_KEY, None)
    target = target_of(item)
    if report.failed and run is not None and target is not None and target.stack:
        # The real outcome, as the deploy fixture's teardown will read it (DEP-2).
        # A stack has many stack-level checks: name the one that failed.
        label = target.id + (f" {item.originalname}" if target.kind == "stack" else "")  # type: ignore[attr-defined]
        run.record_failure(target.stack, ("INCONCLUSIVE " if inconclusive else "") + label)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Runs before pytest's runner tears the session fixtures down: a deploy still in
    # progress when Ctrl-C stopped the run learns it here, and rolls back.
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None and exitstatus == pytest.ExitCode.INTERRUPTED:
        run.interrupted = True


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None and run.deploy_summaries:
        terminalreporter.section("deployproof deploy")
        for line in run.deploy_summaries:
            terminalreporter.write_line(line)
