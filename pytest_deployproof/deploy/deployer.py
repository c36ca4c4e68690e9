"""Deploying one stack, and rolling it back (DEP-1, DEP-2, DEP-4, DEP-9; seed 002 deploy.sh).

Phases, in order, each timed, recorded and shown as an Allure step: **lock**
the stack (a lease, see :mod:`.locks`) -> **preflight**: the stack's preflight
tests of this run passed, and every image of the new version exists on the
host or in its registry -> **backup** (:mod:`.backups`) -> **pull** -> **tag**:
write the new tag into the env file -> **migrate**: the declared one-off
command, in the new version (DEP-11) -> **up**: ``docker compose up --wait``.
Until the env file is written nothing on the host has changed, so a refusal
before that point leaves the old version serving and the env file as it was.

After the stack's tests, :meth:`Deployer.finish` records the outcome. Any failed
or erroring test (or an interrupted run) means the new version does not stand:
the stack goes back to the last version that was verified good (from the
history; else the tag it had before), is verified with the same observations
the smoke checks use (containers running and healthy, endpoints answering), and
both the failed deploy and the rollback are recorded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import allure

from ..inventory.changes import repository_root
from ..inventory.load import load_environment
from ..inventory.model import Stack
from ..observe.containers import service_problems
from ..observe.docker_engine import PullError
from ..observe.drift import DeployedState, config_drift, config_hash, containers_of, record_deployed
from ..observe.probes import probe_all
from ..observe.stackfiles import parse_env
from ..verdicts import CheckFailure, Verdict
from .backups import BackupError, Backups
from .history import History
from .locks import LockHeldError, StackLock
from .promotion import load_verified, promotion_problem, record_verified
from .rollout import RolloutFigures, RolloutWatch
from .runner import RunnerClient, RunnerError
from .signals import deferred
from .versions import is_tag

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["DeployError", "Deployer", "Deployment", "env_value", "set_env_value"]


class DeployError(Exception):
    """The deploy did not happen or did not come up; the message says which phase and why."""


@dataclass
class Deployment:
    """What is being deployed: shown to tests (E2E-1) and to the report."""

    stack: str
    environment: str
    version: str
    previous: str | None
    phases: list[tuple[str, str, float]] = field(default_factory=list)  # phase, outcome, s
    changed: bool = False  # the env file was written: a rollback is needed on failure
    notes: list[str] = field(default_factory=list)
    outcome: str = "pending"  # success, rolled back, rollback failed, refused
    backup: str | None = None  # the backup taken before the tag was written
    rollback: str | None = None  # the version rolled back to, when it came to that
    rollout: RolloutFigures | None = None  # what users saw during `up`, when watched (E2E-3)


def env_value(text: str, key: str) -> str | None:
    """The value ``key`` has in ``text`` (an env file), unquoted; ``None`` when unset."""
    found = re.search(rf"^(?:export\s+)?{re.escape(key)}\s*=\s*(.*)$", text, re.MULTILINE)
    return found.group(1).strip().strip("'\"") if found else None


def set_env_value(text: str, key: str, value: str) -> str:
    """``text`` (an env file) with ``key`` set to ``value``; other lines untouched."""
    line = f"{key}={value}"
    pattern = re.compile(rf"^(export\s+)?{re.escape(key)}\s*=.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: (m.group(1) or "") + line, text, count=1)
    return text + ("" if not text or text.endswith("\n") else "\n") + line + "\n"


class Deployer:
    """Deploys ``version`` of one stack for one run, then records and undoes as needed."""

    def __init__(self, run: Run, stack: Stack, version: str) -> None:
        if not stack.image_tag_var:
            raise DeployError(
                f"stack {stack.name} has no image_tag_var in the inventory: deployproof cannot "
                "tell which env variable carries the version"
            )
        self.run = run
        self.observed = run.observations
        self.masker = run.observations.masker
        self.stack = stack
        self.tag_var = stack.image_tag_var
        self.access = run.observations.access(stack.host)
        self.engine = run.observations.engine(stack.host)
        state = run.inventory.state_dir
        assert state is not None  # resolved by the loader
        self.history = History(state / "deploy-history.log", run.secrets())
        self.lock = StackLock(state / "locks", stack.name)
        self.env = run.inventory.environment
        self.deployment = Deployment(stack.name, self.env, version, previous=None)
        self.action = "deploy"
        self._original_env: str | None = None
        self.signals: list[int] = []  # SIGINT/SIGTERM held while finishing
        self._identities: dict[str, list[str]] = {}  # image -> what it is (DEP-5)
        self._config_hash = ""

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        title = f"{self.action} {self.stack.name} {self.deployment.version}: {name}"
        with allure.step(title):
            try:
                yield
            except BaseException:
                self.deployment.phases.append((name, "fail", time.monotonic() - started))
                raise
            self.deployment.phases.append((name, "ok", time.monotonic() - started))

    # -- deploy -------------------------------------------------------------

    def deploy(self) -> Deployment:
        """Run the phases up to a running new version; raise :class:`DeployError` if not."""
        version = self.deployment.version
        with self._phase("lock"):
            note = self._take_lock()
            self.lock.start_heartbeat()
            if note:
                self.deployment.notes.append(note)
        env_text = self.access.read(self.stack.env_path)
        if env_text is None:
            self._refuse(f"env file {self.stack.env_path} does not exist on host {self.stack.host}")
        self._original_env = env_text
        self.deployment.previous = env_value(env_text, self.tag_var)

        with self._phase("preflight"):
            failed = self.run.ledger.failures_of(self.stack.name)
            if failed:
                self._refuse(f"preflight failed: {', '.join(map(str, failed[:5]))}")
            self._disk_free()
            images = self._available_images(version)
            self._identities = {image: self.engine.identity(image) for image in images}
            self._check_promotion()
            if self._unchanged(env_text):
                return self.deployment
        with self._phase("backup"):
            self._backup()
        if self.stack.runner is not None:
            with self._phase("runner"):
                self.deployment.changed = True  # from here on, a failure rolls back
                self._through_runner(version)
            return self.deployment
        self._apply_locally(images, env_text)
        return self.deployment

    def _apply_locally(self, images: list[str], env_text: str) -> None:
        """Pull, write the tag, migrate, ``compose up --wait``: the stack's own host does it."""
        version = self.deployment.version
        with self._phase("pull"):
            try:
                for image in images:
                    self.engine.pull(image)
            except PullError as exc:
                self._refuse(str(exc))
        with self._phase("tag"):
            self.access.write(self.stack.env_path, set_env_value(env_text, self.tag_var, version))
            self.deployment.changed = True
            self.observed.invalidate(self.stack)
        if self.stack.migration is not None:
            with self._phase("migrate"):
                self._migrate()
        with self._phase("up"):
            watch = None
            if self.stack.name in self.run.ledger.rollout_stacks:
                watch = RolloutWatch(list(self.stack.endpoints), self.stack.rollout).start()
            try:
                self._up()
            finally:
                if watch is not None:
                    self.deployment.rollout = watch.stop()

    def _through_runner(self, version: str) -> None:
        """DEP-8: the runner applies the tag; then the deployed state is recorded here."""
        runner = self.stack.runner
        assert runner is not None
        secret = os.environ.get(runner.secret_env, "")
        if not secret:
            raise DeployError(f"stack {self.stack.name} deploys through {runner.url}, but "
                              f"{runner.secret_env} is not set")  # fmt: skip
        client = RunnerClient(runner.url, secret, runner.timeout_s)
        try:
            who = f"deployproof run {self.lock.run_id}"
            note = client.deploy(self.env, version, triggered_by=who)
        except RunnerError as exc:
            raise DeployError(str(exc)) from None
        self.deployment.notes.append(note)
        self.observed.invalidate(self.stack)
        env_text = self.access.read(self.stack.env_path) or ""
        assert self.run.inventory.state_dir is not None
        record_deployed(self.run.inventory.state_dir, self.stack, self.access, version, env_text)

    def _check_promotion(self) -> None:
        """DEP-5: only a version (and image content) the source environment verified."""
        promotion = self.run.inventory.promotion
        if promotion is None:
            return
        version, force = self.deployment.version, self.run.settings.force
        if promotion.require_tag:
            repo = self.run.inventory.repo or repository_root(self.stack.run_dir)
            if not is_tag(repo, version):
                self._refuse(f"{version} is not a git tag of {repo}: untagged versions never "
                             f"reach {self.env}")  # fmt: skip
        source = load_environment(self.run.settings.inventory.value, promotion.source)
        assert source.state_dir is not None
        verified = load_verified(source.state_dir, self.stack.name)
        problem = promotion_problem(verified, version, self._identities, promotion.source)
        if problem and not force:
            self._refuse(f"{problem} (--force REASON to deploy it anyway)")
        if problem:
            self.deployment.notes.append(f"forced: {force} ({problem})")

    def _unchanged(self, env_text: str) -> bool:
        """DEP-7: the same config as deployed (files + env with this version), and the
        containers as deployed: nothing to do, and nothing is touched."""
        assert self.run.inventory.state_dir is not None
        recorded = DeployedState.load(self.run.inventory.state_dir, self.stack.name)
        if recorded is None:
            return False
        compose_text = self.access.read(self.stack.compose_path) or ""
        wanted = set_env_value(env_text, self.tag_var, self.deployment.version)
        self._config_hash = config_hash(compose_text, parse_env(wanted))
        if self._config_hash != recorded.config_hash:
            return False
        containers = self.observed.containers(self.stack.host)
        containers.refresh()
        running = containers_of(containers, self.stack)
        current = {ids[0] for ids in self._identities.values() if ids}
        if any(c.image_id and c.image_id not in current for c in running):
            return False  # the same tag now names other content: not the same deployment
        drifted = config_drift(self.stack, recorded, self._config_hash, running)
        if drifted:
            return False
        self.deployment.outcome = "unchanged"
        self.deployment.notes.append(
            f"{self.deployment.version}: config hash {self._config_hash[:12]} is the deployed "
            "one; nothing to do"
        )
        return True

    def _disk_free(self) -> None:
        """PRE-5 for the stack's host, whether or not its disk test was selected."""
        host = self.run.inventory.hosts[self.stack.host]
        usage = self.observed.disk_usage(self.stack.host)
        if usage.free_percent < host.min_free_percent:
            self._refuse(
                f"{usage.path} on host {host.name} has {usage.free_percent:.0f}% free, "
                f"below {host.min_free_percent:g}%"
            )

    def _backup(self) -> None:
        """DEP-3: back up before anything changes; a failed backup refuses the deploy."""
        files = self.observed.stack_files(self.stack.name)
        backups = Backups(self.stack, self.access, self.env, files.masker)
        try:
            taken = backups.take(
                self.deployment.previous, files.env, self.run.inventory.secrets_prefix
            )
        except BackupError as exc:
            self._refuse(str(exc))
        self.deployment.backup = taken.name
        allure.attach(
            json.dumps(taken.manifest, indent=2),
            name=f"backup {taken.name} manifest",
            attachment_type=allure.attachment_type.JSON,
        )
        last_good = self.history.last_good(self.stack.name, self.env)
        backups.prune(self.stack.backup.keep, last_good.version if last_good else None)

    def _migrate(self) -> None:
        """DEP-11: the migration command in the new version's image, before it serves."""
        migration = self.stack.migration
        assert migration is not None
        name = f"{self.stack.project_name}-migrate-{uuid.uuid4().hex[:8]}"
        done = self.access.compose(
            self.stack,
            "run",
            "-T",
            "--name",
            name,
            migration.service,
            *shlex.split(migration.command),
            timeout_s=migration.timeout_s,
        )
        code = self.engine.exit_code(name)  # and removed, even when the timeout left it running
        if done.rc == 124:
            code = 124
        if code is None:
            code = done.rc or -1  # Compose did not even create the container
        if code != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            what = "timed out" if code == 124 else f"failed (exit code {code})"
            raise DeployError(
                f"migration `{migration.command}` of {self.stack.name} "
                f"{self.deployment.version} {what}: "
                f"{self.masker(lines[-1] if lines else 'no output')}; what it changed in "
                f"databases is not undone: backup {self.deployment.backup} holds the state before"
            )

    def _take_lock(self) -> str | None:
        """The stack's lease, or a refusal naming its holder (DEP-9); returns a reclaim note."""
        try:
            return self.lock.acquire(timeout_s=self.run.settings.lock_wait_s)
        except LockHeldError as exc:
            self._refuse(str(exc))

    def _refuse(self, reason: str) -> NoReturn:
        """Stop before anything changed: record it and say so."""
        self.deployment.outcome = "refused"
        name, version = self.stack.name, self.deployment.version
        self.history.record(name, self.env, self.action, version, "fail", notes=reason)
        raise DeployError(f"{self.action} of {name} {version} refused, nothing changed: {reason}")

    def _available_images(self, version: str) -> list[str]:
        """The images of ``version``, each on the host or in its registry; else refuse."""
        images = self._images_of(version)
        missing = [
            f"{image} is {lookup.where}"
            for image in images
            if not (lookup := self.engine.image(image)).found
        ]
        if missing:
            self._refuse("; ".join(missing))
        return images

    def _images_of(self, version: str) -> list[str]:
        """The images the stack runs at ``version`` (Compose resolves the tag variable)."""
        done = self.access.compose(self.stack, "config", "--images", env={self.tag_var: version})
        images = sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})
        if done.rc != 0 or not images:
            reason = self.masker(done.stderr.strip().splitlines()[-1] if done.stderr else "")
            self._refuse(f"docker compose config failed for {version}: {reason}")
        return images

    def _up(self) -> None:
        timeout = str(int(self.run.inventory.up_timeout_s))
        done = self.access.compose(self.stack, "up", "-d", "--wait", "--wait-timeout", timeout)
        if done.rc != 0:
            lines = done.stderr.strip().splitlines()
            raise DeployError(
                f"docker compose up of {self.stack.name} {self.deployment.version} did not become "
                f"healthy: {self.masker(lines[-1] if lines else f'exit code {done.rc}')}"
            )
        # What is now running, for the drift checks (DRF-1): the files' hash, Compose's hashes.
        env_text = self.access.read(self.stack.env_path) or ""
        assert self.run.inventory.state_dir is not None
        record_deployed(
            self.run.inventory.state_dir,
            self.stack,
            self.access,
            env_value(env_text, self.tag_var),
            env_text,
        )

    # -- after the tests ----------------------------------------------------

    def finish(self, failures: list[CheckFailure], *, deploy_error: str | None = None) -> str:
        """Record the outcome; roll back and verify when anything failed. Never raises;
        SIGINT and SIGTERM wait until it is done (``signals`` tells the caller of any)."""
        with deferred(f"recording the deploy of {self.stack.name}") as self.signals:
            try:
                return self._finish(failures, deploy_error)
            except Exception as exc:  # a teardown must not hide the verdict behind a traceback
                self.deployment.outcome = "rollback failed"
                return f"{self.stack.name}: finishing the deploy failed: {exc}"
            finally:
                self.lock.release()

    def _finish(self, failures: list[CheckFailure], deploy_error: str | None) -> str:
        version, name = self.deployment.version, self.stack.name
        if self.deployment.outcome == "refused":
            return deploy_error or f"{name}: deploy of {version} refused, nothing changed"
        if self.deployment.outcome == "unchanged":
            return self._skipped(failures)
        if not failures and deploy_error is None:
            return self._succeeded()
        return self._failed(failures, deploy_error)

    def _failed(self, failures: list[CheckFailure], deploy_error: str | None) -> str:
        """Record the failed deploy; roll back to the last good version and verify it."""
        version, name = self.deployment.version, self.stack.name
        reason = (
            deploy_error or f"{len(failures)} checks failed: {', '.join(map(str, failures[:3]))}"
        )
        inconclusive = deploy_error is None and all(
            f.verdict is Verdict.INCONCLUSIVE for f in failures
        )
        status = "inconclusive" if inconclusive else "fail"
        self.history.record(name, self.env, "deploy", version, status, notes=reason)
        if not self.deployment.changed:
            return f"{name}: deploy of {version} failed before anything changed ({reason})"
        target = self._rollback_target()
        if target is None:
            self.deployment.outcome = "rollback failed"
            self.history.record(
                name, self.env, "rollback", "-", "fail", notes="no previous version known"
            )
            return f"{name}: {version} failed and there is no previous version to roll back to"
        self.deployment.rollback = target
        verdict = self._rollback(target)
        ok = not verdict
        self.history.record(
            name,
            self.env,
            "rollback",
            target,
            "success" if ok else "fail",
            notes=f"after {version}: {reason}" + ("" if ok else f"; verification: {verdict}"),
        )
        self.deployment.outcome = "rolled back" if ok else "rollback failed"
        if ok:
            return f"{name}: {version} failed ({reason}); rolled back to {target}, verified"
        return f"{name}: {version} failed; ROLLBACK TO {target} FAILED VERIFICATION: {verdict}"

    def _skipped(self, failures: list[CheckFailure]) -> str:
        """Nothing was deployed; the checks still judged what runs. Verified, it counts as
        good (a run killed after `up` leaves a version that was never verified)."""
        version, name = self.deployment.version, self.stack.name
        verdict = "verified" if not failures else f"{len(failures)} checks failed"
        notes = f"skipped: config {self._config_hash[:12]} already deployed; {verdict}"
        status = "success" if not failures else "fail"
        self.history.record(name, self.env, "deploy", version, status, notes=notes)
        if not failures:
            assert self.run.inventory.state_dir is not None
            record_verified(self.run.inventory.state_dir, name, version, self._identities)
        return f"{name}: {version} is already deployed (same config hash): skipped, {verdict}"

    def _succeeded(self) -> str:
        version, name = self.deployment.version, self.stack.name
        notes = [f"backup {self.deployment.backup}"] if self.deployment.backup else []
        notes += [n for n in self.deployment.notes if n.startswith("forced:")]
        self.history.record(name, self.env, "deploy", version, "success", notes="; ".join(notes))
        assert self.run.inventory.state_dir is not None
        record_verified(self.run.inventory.state_dir, name, version, self._identities)
        self.deployment.outcome = "success"
        return f"{name}: {version} deployed and verified"

    def _rollback_target(self) -> str | None:
        last = self.history.last_good(self.stack.name, self.env)
        if last is not None and last.version != self.deployment.version:
            return last.version
        previous = self.deployment.previous
        return previous if previous and previous != self.deployment.version else None

    def _rollback(self, target: str) -> str:
        """Put ``target`` back and verify it; return what is still wrong ('' when sound)."""
        if self.stack.runner is not None:
            try:
                self._through_runner(target)
            except DeployError as exc:
                return str(exc)
            return self.verify()
        assert self._original_env is not None
        restored = set_env_value(self._original_env, self.tag_var, target)
        self.access.write(self.stack.env_path, restored)
        self.observed.invalidate(self.stack)
        try:
            self._up()
        except DeployError as exc:
            return str(exc)
        return self.verify()

    # -- the operator's rollback (``deployproof rollback``) ---------------------

    def current_version(self) -> str | None:
        return env_value(self.access.read(self.stack.env_path) or "", self.tag_var)

    def roll_back(self) -> str:
        """Put ``version`` (given at construction) back by hand: lock, check, tag, up, verify,
        record. Raises :class:`DeployError` when refused; returns what was done."""
        self.action = "rollback"
        version, name = self.deployment.version, self.stack.name
        try:
            self._take_lock()
            env_text = self.access.read(self.stack.env_path)
            if env_text is None:
                self._refuse(f"env file {self.stack.env_path} does not exist")
            self._original_env = env_text
            self._available_images(version)
            verdict = self._rollback(version)
            status = "fail" if verdict else "success"
            notes = "by hand" + (f"; verification: {verdict}" if verdict else "")
            self.history.record(name, self.env, "rollback", version, status, notes=notes)
            if verdict:
                raise DeployError(
                    f"rolled {name} back to {version}, but it is not sound: {verdict}"
                )
            return f"{name}: rolled back to {version}, verified"
        finally:
            self.lock.release()

    # -- the operator's restore (``deployproof restore``) -----------------------

    def restore(self, name: str | None) -> str:
        """Put a backup back: files and databases, then up and verify (DEP-3, DEP-12).

        Every file is checked against the manifest before anything is touched; each
        database is restored in one transaction, before the files, so a refusal or a
        failed database restore leaves the stack as it was."""
        self.action = "restore"
        files = self.observed.stack_files(self.stack.name)
        backups = Backups(self.stack, self.access, self.env, files.masker)
        try:
            self._take_lock()
            try:
                backup = backups.find(name)
                self.deployment.version = backup.version or "-"
                damaged = backups.verify(backup)
                if damaged:
                    raise BackupError(f"backup {backup.name} is damaged: {'; '.join(damaged)}")
                databases = backups.restore_databases(
                    backup, files.env, self.run.inventory.secrets_prefix
                )
                backups.restore_files(backup)
            except BackupError as exc:
                self._refuse(str(exc))
            self.observed.invalidate(self.stack)
            try:
                self._up()
                verdict = self.verify()
            except DeployError as exc:
                verdict = str(exc)
            restored = ", ".join(["files", *(f"database {d}" for d in databases)])
            notes = f"backup {backup.name}: {restored}" + (
                f"; verification: {verdict}" if verdict else ""
            )
            status = "fail" if verdict else "success"
            self.history.record(
                self.stack.name, self.env, "restore", backup.version or "-", status, notes=notes
            )
            if verdict:
                raise DeployError(
                    f"restored {self.stack.name} from {backup.name}, but it is not sound: {verdict}"
                )
            return f"{self.stack.name}: restored {restored} from backup {backup.name}, verified"
        finally:
            self.lock.release()

    def verify(self) -> str:
        """The smoke observations of the stack, judged: '' when every service is up and
        every endpoint answers."""
        problems: list[str] = []
        containers = self.observed.containers(self.stack.host)
        containers.refresh()
        for name, service in self.stack.services.items():
            state = containers.service(self.stack, name, self.run.inventory.probes)
            problems += service_problems(service, state)
        results = probe_all(((e.name, e) for e in self.stack.endpoints), self.run.inventory.probes)
        problems += [r.describe().splitlines()[0] for r in results.values() if not r.passed]
        return "; ".join(problems)
