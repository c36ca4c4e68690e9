"""Fixtures that make a user's end-to-end test a few lines (E2E-1), and ``--suite`` (E2E-2).

A user's suite lives in ``suites/e2e/<name>/`` (the folder is the ini key
``deployproof_e2e_dir``) and runs with ``--suite <name>`` (the ``/e2e <name>`` comment
maps to it). Its tests take ``stack`` (one test per
selected stack) and any of:

* ``stack_http``: an ``httpx.Client`` whose base URL is the stack's;
* ``stack_db``: a psycopg connection to the stack's PostgreSQL database, as the
  stack's own user (the password read from its env file, never the inventory);
* ``stack_host``: the testinfra host the stack runs on;
* ``stack_containers``: its containers, as Docker SDK objects;
* ``deployment``: what ``--deploy`` is doing to it (``None`` when not deploying).

E2E suites are collected only when asked for: they may be slow, and some of
them (``shutdown``) act on the running stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._e2e_dir import DEFAULT_E2E_DIR, E2E_DIR_KEY, E2EFolderError, folder_in
from .errors import Inconclusive

if TYPE_CHECKING:  # plugin.py imports this module in every pytest run: keep it light
    from .inventory.model import Database, Service, Stack
    from .observe.databases import IsolationSeen
    from .observe.stackfiles import StackFiles
    from .orchestrators.containers import StopSeen
    from .run import Run

__all__ = [
    "database_isolation",
    "e2e_folder",
    "e2e_suites",
    "ignored_by_suites",
    "sigterm_stops",
    "stack_containers",
    "stack_db",
    "stack_host",
    "stack_http",
    "suite_of",
]


_FOLDER_KEY = pytest.StashKey[Path]()


def e2e_folder(config: pytest.Config) -> Path:
    """The folder of the E2E suites (``deployproof_e2e_dir`` under the rootdir), checked
    once per run: plugin.py asks first, so a folder leading out of the rootdir stops the
    run with the fix before anything is collected from it."""
    folder = config.stash.get(_FOLDER_KEY, None)
    if folder is None:
        value = str(config.getini(E2E_DIR_KEY)).strip()
        if value in ("", DEFAULT_E2E_DIR):
            # The convention's own folder, not a setting: pytest collects it as any other
            # (a project whose suites/ links elsewhere must not find every run refused).
            folder = config.rootpath / DEFAULT_E2E_DIR
        else:
            where = f"in {config.inipath}" if config.inipath else "ini"
            try:
                folder = folder_in(config.rootpath, value, where)
            except E2EFolderError as exc:
                raise pytest.UsageError(str(exc)) from None
        config.stash[_FOLDER_KEY] = folder
    return folder


def e2e_suites(folder: Path) -> list[str]:
    """The suites in the project's E2E ``folder``: its sub-folders."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[0] not in "._")


def ignored_by_suites(path: Path, suites: tuple[str, ...], folder: Path) -> bool:
    """Whether ``--suite`` leaves ``path`` out: an E2E suite not asked for, or, when one
    is asked for, every test file outside the E2E suites asked for."""
    suite = suite_of(path, folder)
    if suite is not None:
        return bool(suite) and "all" not in suites and suite not in suites
    return bool(suites) and path.suffix == ".py" and path.name.startswith("test_")


def suite_of(path: Path, folder: Path) -> str | None:
    """The E2E suite ``path`` belongs to (``<folder>/<suite>/...``); ``""`` for the
    ``folder`` itself; ``None`` outside it. With the default folder, ``suites/e2e``
    anywhere in the path counts: pytest started inside it takes that as its rootdir."""
    if path.is_relative_to(folder):
        parts = path.relative_to(folder).parts
        return parts[0] if parts else ""
    if folder.parts[-2:] == tuple(DEFAULT_E2E_DIR.split("/")):
        parts = path.parts
        for index in range(len(parts) - 1, 0, -1):
            if parts[index - 1 : index + 1] == ("suites", "e2e"):
                return parts[index + 1] if index + 1 < len(parts) else ""
    return None


@pytest.fixture
def stack_http(stack: Stack) -> Iterator[Any]:
    """An ``httpx.Client`` bound to the stack's base URL (``base_url`` in the inventory, or
    its first http endpoint's scheme, host and port)."""
    import httpx  # noqa: PLC0415

    base = stack.http_base_url
    if base is None:
        pytest.skip(f"stack {stack.name} has no base_url and no http endpoint")
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


@pytest.fixture
def stack_db(deployproof_run: Run, stack: Stack) -> Iterator[Any]:
    """A connection to the stack's (first) PostgreSQL database as the stack's own user."""
    from .observe.databases import connect_postgres, driver, password_for  # noqa: PLC0415

    databases = stack.postgres_databases
    if not databases:
        pytest.skip(f"stack {stack.name} declares no PostgreSQL database")
    psycopg = driver("postgresql")
    database = databases[0]
    files = deployproof_run.observations.stack_files(stack.name)
    password = password_for(database, files.env, deployproof_run.inventory.secrets_prefix)
    try:
        connection = connect_postgres(database, password)
    except psycopg.OperationalError as exc:
        message = files.masker(" ".join(str(exc).split()))
        raise Inconclusive(f"stack {stack.name}: database {database.name}: {message}") from None
    with connection:
        yield connection


@pytest.fixture
def stack_host(deployproof_run: Run, stack: Stack) -> Any:
    """The testinfra host the stack runs on (local, ssh, ...)."""
    return deployproof_run.observations.access(stack.host).testinfra


@pytest.fixture
def database_isolation(deployproof_run: Run, stack: Stack, database: Database) -> IsolationSeen:
    """This database's user, tried against its own database and every other stack's on the
    same PostgreSQL server (E2E-2). Skipped for databases that are not PostgreSQL."""
    from .observe.databases import observe_isolation, password_for  # noqa: PLC0415

    if database.kind != "postgresql":
        pytest.skip(
            f"database {database.name} is {database.kind}: isolation is per PostgreSQL user"
        )
    run = deployproof_run
    files = run.observations.stack_files(stack.name)
    password = password_for(database, files.env, run.inventory.secrets_prefix)
    return observe_isolation(run.inventory, stack, database, password, files.masker)


@pytest.fixture
def sigterm_stops(
    stack: Stack, service: Service, compose_config: StackFiles, stack_containers: list[Any]
) -> list[StopSeen]:
    """SIGTERM to each running container of this test's service, one at a time: how each
    stopped (E2E-4). The containers are started again. It stops services: staging only."""
    from .orchestrators.containers import grace_period_s, stop_with_sigterm  # noqa: PLC0415

    declared = compose_config.services.get(service.name, {})
    return stop_with_sigterm(stack_containers, service.name, grace_period_s(declared))


@pytest.fixture
def stack_containers(deployproof_run: Run, stack: Stack) -> list[Any]:
    """The stack's containers (``docker.models.containers.Container``), running or not."""
    import docker  # noqa: PLC0415

    from .reach.docker_client import client_for  # noqa: PLC0415

    host = deployproof_run.inventory.hosts[stack.host]
    try:
        return list(
            client_for(host).containers.list(
                all=True, filters={"label": f"com.docker.compose.project={stack.project_name}"}
            )
        )
    except docker.errors.DockerException as exc:
        raise Inconclusive(f"cannot list containers on host {host.name!r}: {exc}") from None
