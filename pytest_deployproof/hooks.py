"""The hooks of a run with an environment chosen (``--env``): plugin.py registers this
module then, and only then. Each hook hands its work to the module that owns it.

Kept apart from plugin.py because its imports (pydantic, httpx, the Docker SDK, ...)
cost ~0.4 s: a pytest run of a project that merely has the plugin installed must not
pay for them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import e2e_fixtures, fixtures, suites
from .checks.quarantine import quarantine_of, rewrite
from .deploy.deployer import DeployError
from .deploy.signals import terminate_as_interrupt
from .errors import Inconclusive
from .inventory.changes import (
    ChangeError,
    changed_files,
    impact_of,
    repository_root,
    work_tree_of,
)
from .inventory.load import InventoryError, discover, load_environment
from .inventory.model import Inventory, Quarantine
from .inventory.selection import SelectionError, select
from .ledger import Outcome
from .reach import ssh
from .reach.hosts import is_ssh, testinfra_host
from .report.reporter import Reporter
from .run import Run
from .settings import Settings
from .stash import BLOCKED_KEY, RUN_KEY, SETTINGS_KEY, VERDICT_KEY
from .targets import (
    CHILD_KINDS,
    ONLY_MARK,
    PARAM_NAMES,
    TARGET_MARK,
    Target,
    build_rows,
    deploy_order,
    target_of,
)
from .verdicts import HELD_EXIT_CODE, VERDICT_PROPERTY, CheckFailure, Verdict
from .xdist_groups import TargetGroups, make_scheduler

__all__ = ["start"]


def start(config: pytest.Config, settings: Settings) -> None:
    """Load the environment's inventory and selection, and register the run's reporter
    (plugin.py then registers this module's hooks)."""
    config.stash[RUN_KEY] = run = _new_run(config, settings)
    config.pluginmanager.register(Reporter(config), "deployproof-reporting")
    if settings.deploy.value is not None:
        _refuse_state_in_checkout(run.inventory)
        config.pluginmanager.register(fixtures.DeployFirst(), "deployproof-deploy-first")
        terminate_as_interrupt()  # a cancelled CI job rolls back like Ctrl-C (DEP-2)
    _check_suites(config)
    _check_parity(config, run.inventory)
    _collect_bundled_checks(config)


def _check_parity(config: pytest.Config, inventory: Inventory) -> None:
    """An environment ``--parity`` names must load now, as the run starts: found later,
    inside a fixture, the mistake would surface as an error per test."""
    value = config.getoption("deployproof_parity", None)
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    for name in names:
        if name == inventory.environment:
            continue
        try:
            load_environment(config.stash[SETTINGS_KEY].inventory.value, name)
        except InventoryError as exc:
            raise pytest.UsageError(f"--parity {value}: {exc}") from None


def _collect_bundled_checks(config: pytest.Config) -> None:
    """The checks the package ships are collected beside the project's own tests, from
    any rootdir, when no test path was named on the command line (naming paths runs
    just those); ``--deployproof-no-builtin``, ``DEPLOYPROOF_BUILTIN=0`` or the ini's
    ``deployproof_builtin = false`` opt out."""
    variable = os.environ.get("DEPLOYPROOF_BUILTIN", "").strip().lower()
    if variable:
        wanted = variable not in ("0", "false", "no", "off")
    else:
        wanted = bool(config.getini("deployproof_builtin"))
    if config.getoption("deployproof_no_builtin") or not wanted:
        return
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        return
    bundled = str(Path(suites.__file__).parent)
    if bundled not in config.args:  # an xdist worker is handed the controller's args
        config.args.append(bundled)


def _refuse_state_in_checkout(inventory: Inventory) -> None:
    """--deploy keeps its history, leases and verified versions in the state directory; a
    default one inside a git checkout is wiped by CI's clean step, and with it what /revert
    and promotion rely on, while leases then exclude nobody (docs/requirements.md#tru-2)."""
    state = inventory.state.root
    checkout = None if inventory.state_dir_given else work_tree_of(state)
    if checkout is not None:
        raise pytest.UsageError(
            f"--deploy: the default state directory {state} is inside the git work tree "
            f"{checkout}, where a checkout's clean step deletes history, leases and verified "
            "versions. Set state_dir in the inventory to a path outside the checkout (e.g. "
            f"/var/lib/deployproof/{inventory.environment}), or to this path to keep it there."
        )


def _new_run(config: pytest.Config, settings: Settings) -> Run:
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
    return Run.start(settings, selection, worker=workerinput is not None, known_secrets=known)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: hand each worker the secrets to mask (read once, here)."""
    run = node.config.stash[RUN_KEY]
    node.workerinput["deployproof_secrets"] = list(run.secrets().values)


def _suites(config: pytest.Config) -> tuple[str, ...]:
    values = config.getoption("deployproof_suites", None) or []
    return tuple(s.strip() for value in values for s in value.split(",") if s.strip())


def _check_suites(config: pytest.Config) -> None:
    asked = _suites(config)
    if not asked:
        return
    folder = e2e_fixtures.e2e_folder(config)
    known = e2e_fixtures.e2e_suites(folder) if folder.is_dir() else []
    unknown = [s for s in asked if s != "all" and s not in known]
    if unknown:
        raise pytest.UsageError(
            f"--suite: no E2E suite {', '.join(map(repr, unknown))} in {folder}; "
            f"known are: {', '.join(known) or '(none)'}"
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    ignored = e2e_fixtures.ignored_by_suites(
        collection_path, _suites(config), e2e_fixtures.e2e_folder(config)
    )
    return True if ignored else None


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS_KEY]
    run = config.stash[RUN_KEY]
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
    if run.observations.probing_ahead:
        lines.append(
            "deployproof: endpoint checks get their probes from a separate process, "
            f"streamed as the tests run (more than {run.inventory.probes.concurrency} "
            "endpoints selected)"
        )
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {name for name in PARAM_NAMES if name in metafunc.fixturenames}
    run = metafunc.config.stash[RUN_KEY]
    if not wanted:
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
    run = config.stash[RUN_KEY]
    if config.getvalue("dist") != "loadgroup":
        return None
    return make_scheduler(config, log, TargetGroups(run.selection, run.settings.group_by))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    run = config.stash[RUN_KEY]
    if run.deploying:
        items[:] = deploy_order(items)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Before collection, so the prober's interpreter starts while pytest collects. Not on
    # an xdist controller (it runs no tests) nor for --collect-only (it probes nothing).
    config = session.config
    if not config.option.collectonly and not config.pluginmanager.has_plugin("dsession"):
        config.stash[RUN_KEY].observations.start_prober()


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k/-m deselection: a check that will not run blocks nothing.
    session.config.stash[RUN_KEY].plan(session.items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test given an ssh host's testinfra ``host`` errors as INCONCLUSIVE, before its body
    runs, when the host cannot be reached (testinfra would raise mid-test, a failure)."""
    run = item.config.stash[RUN_KEY]
    target = target_of(item)
    if target is None or not target.host:
        return
    host = run.inventory.hosts[target.host]
    if "host" in getattr(item, "fixturenames", ()) and is_ssh(host):
        ssh.connection(host).open()


def _verdict(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> Verdict:
    if report.skipped:
        return Verdict.BLOCKED if BLOCKED_KEY in item.stash else Verdict.SKIPPED
    if not report.failed:
        return Verdict.PASSED
    if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
        return Verdict.INCONCLUSIVE
    if call.excinfo is not None and call.excinfo.errisinstance(DeployError):
        return Verdict.DEPLOY_FAILED
    return Verdict.FAILED


_GATE_KEY = pytest.StashKey[tuple[bool, "Quarantine | None"]]()


def _gate_and_quarantine(
    item: pytest.Item, run: Run, target: Target | None
) -> tuple[bool, Quarantine | None]:
    """Whether the test is a preflight gate, and its quarantine entry: looked up once per
    test, not per report. A gate holds a deploy: only a waiver (per gate and service) may
    let it off, never a quarantine."""
    try:
        return item.stash[_GATE_KEY]
    except KeyError:
        pass
    entry = None
    gate = item.get_closest_marker("preflight") is not None
    if target is not None and target.stack in run.inventory.stacks and not gate:
        stack = run.inventory.stacks[target.stack]
        entry = quarantine_of(stack, getattr(item, "originalname", item.name), target)
    item.stash[_GATE_KEY] = (gate, entry)
    return gate, entry


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The verdict of each report, decided here once and carried on it (verdicts.py);
    then, as the outermost wrapper, everything the report shows is masked (REP-3)."""
    report = yield
    run = item.config.stash[RUN_KEY]
    target = target_of(item)
    gate, entry = _gate_and_quarantine(item, run, target)
    if entry is not None and report.when == "call":
        report = rewrite(report, entry)  # quarantined (skipped), or expired (failed)
        verdict = Verdict.SKIPPED if report.skipped else Verdict.FAILED
    else:
        verdict = _verdict(item, report, call)
    # Each report carries the test's verdict so far (its worst phase): the teardown report,
    # the one JUnit reads properties from, then carries the test's verdict.
    worst = Verdict.worst([item.stash.get(VERDICT_KEY, verdict), verdict])
    item.stash[VERDICT_KEY] = worst
    report.user_properties.append((VERDICT_PROPERTY, worst.value))
    if verdict in (Verdict.INCONCLUSIVE, Verdict.DEPLOY_FAILED) and call.excinfo is not None:
        # Facts about the infrastructure or the deploy, not bugs in the plugin: no traceback.
        report.longrepr = f"{verdict.label}: {call.excinfo.value}"
    if (
        report.when == "call"
        and report.passed
        and target is not None
        and target.stack
        and not gate  # a preflight check runs before the deploy: no evidence of it
    ):
        run.ledger.record_pass(target.stack)  # positive evidence for the deploy (TRU-1)
    if report.failed and target is not None and target.stack:
        # The real outcome, as the deploy fixture's teardown will read it (DEP-2).
        # A stack has many stack-level checks: name the one that failed.
        label = target.id + (f" {item.originalname}" if target.kind == "stack" else "")  # type: ignore[attr-defined]
        run.ledger.record_failure(target.stack, CheckFailure(label, verdict))
    if report.failed or report.sections or entry is not None:
        masker = run.secrets()
        if isinstance(report.longrepr, tuple):  # a skip's (path, line, reason)
            path, line, reason = report.longrepr
            report.longrepr = (path, line, masker(reason))
        else:
            text = str(report.longrepr) if report.longrepr is not None else ""
            if text and masker(text) != text:
                report.longrepr = masker(text)
        report.sections = [(title, masker(body)) for title, body in report.sections]
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    # Before pytest's runner tears the session fixtures down: a deploy still in progress
    # when Ctrl-C stopped the run learns it here, and rolls back.
    run = session.config.stash[RUN_KEY]
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        run.ledger.interrupted = True
    yield
    # After the teardowns (and, under xdist, every worker's records): a held deploy is
    # neither a pass nor a failure, and the exit code says so (BYD-1).
    if session.exitstatus == pytest.ExitCode.OK:
        outcomes = {record.outcome for record in run.ledger.records}
        if any(not (o.good or o is Outcome.HELD) for o in outcomes):  # e.g. finishing failed
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif Outcome.HELD in outcomes or _nothing_checked(session):
            session.exitstatus = HELD_EXIT_CODE


def _nothing_checked(session: pytest.Session) -> bool:
    """Tests ran, yet none of them passed (each was skipped: nothing selected, every
    target blocked): nothing was shown, so the run is inconclusive, not green (BYD-1)."""
    run = session.config.stash[RUN_KEY]
    listing = session.config.option.collectonly
    return not listing and session.testscollected > 0 and run.ledger.checks_passed == 0


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash[RUN_KEY]
    stats = terminalreporter.stats
    skipped = len(stats.get("skipped", []))
    clean = not (stats.get("failed") or stats.get("error"))
    if skipped and clean and run.ledger.checks_passed == 0:
        terminalreporter.section("deployproof")
        terminalreporter.write_line(
            f"INCONCLUSIVE: nothing was checked ({skipped} skipped, none ran and passed); "
            f"not a pass: exit code {HELD_EXIT_CODE}",
            yellow=True,
        )
    if run.ledger.summaries:
        terminalreporter.section("deployproof deploy")
        masker = run.secrets()
        for line in run.ledger.summaries:
            terminalreporter.write_line(masker(line))
