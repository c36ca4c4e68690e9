"""The pytest plugin's entry point: options, markers, and nothing else until an
environment is chosen (``--env``, ``DEPLOYPROOF_ENV`` or the ``deployproof_env`` ini
key). Then hooks.py loads the inventory and registers the run's hooks.

Installing the plugin into a project without an inventory changes nothing there:
testinfra's own ``host`` parametrisation is left alone, and the modules imported
here are light (a test keeps pydantic, httpx and the Docker SDK out of them), so
an ordinary pytest run does not pay for what only a deployproof run needs.
"""

from __future__ import annotations

import pytest

from . import e2e_fixtures, fixtures
from .deploy.signals import restore_terminate
from .reach import ssh
from .settings import SteppedAside, add_options, make_room, resolve
from .stash import RUN_KEY, SETTINGS_KEY
from .targets import BLOCKS_MARK, ONLY_MARK, ROLLOUT_MARK, TARGET_MARK
from .verdicts import CHECK_KINDS

STEPPED_ASIDE = "deployproof-stepped-aside"
MARKERS = {
    **CHECK_KINDS,
    TARGET_MARK: "deployproof_target(target): set by deployproof on the tests it parametrises",
    ONLY_MARK: "deployproof_only(**attributes): parametrise only over items with these values, "
    "e.g. deployproof_only(health=True)",
    ROLLOUT_MARK: "deployproof_rollout: this test judges the downtime of the stack's rollout "
    "under --deploy, so deployproof probes its endpoints while `compose up` runs",
    BLOCKS_MARK: "deployproof_blocks(observation): this check reports 'containers' or 'compose'; "
    "checks that need it are skipped as blocked by it when it fails",
}


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    add_options(parser)
    stepped = SteppedAside()
    make_room(parser, stepped)
    pluginmanager.register(stepped, STEPPED_ASIDE)


def pytest_report_header(config: pytest.Config) -> list[str]:
    stepped = config.pluginmanager.get_plugin(STEPPED_ASIDE)
    return [
        f"deployproof: {name} is this project's own option; deployproof's is --dp-{name[2:]}"
        for name in (stepped.names if stepped is not None else [])
    ]


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.pluginmanager.register(fixtures, "deployproof-fixtures")
    config.pluginmanager.register(e2e_fixtures, "deployproof-e2e")
    e2e_fixtures.e2e_folder(config)  # a folder out of the rootdir is refused now, with the fix
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
        from . import hooks  # noqa: PLC0415 - the heavy part, for deployproof runs only

        hooks.start(config, settings)
        config.pluginmanager.register(hooks, "deployproof-run")


def _spreads_stacks(config: pytest.Config) -> bool:
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and getattr(config.option, "dist", "no") not in ("loadgroup", "no")


def pytest_unconfigure(config: pytest.Config) -> None:
    restore_terminate()
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.close()
    ssh.close_all()  # this process's ssh master connections (atexit would, later)
    if config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.unregister(fixtures)
    for name in (
        "deployproof-run",
        "deployproof-reporting",
        "deployproof-e2e",
        "deployproof-deploy-first",
    ):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    # Before -m deselects: a test of suites/e2e/<name>/ (deployproof_e2e_dir) is an e2e check.
    suite = e2e_fixtures.suite_of(item.path, e2e_fixtures.e2e_folder(item.config))
    if suite and not item.get_closest_marker("e2e"):
        item.add_marker(pytest.mark.e2e)
