"""What every action on a stack shares (deploy, roll back, restore): see :class:`StackAction`.

A phase is timed, recorded and shown as an Allure step; a refusal before anything
changed is recorded in the history and raised as :class:`DeployError`; ``compose
up --wait`` is followed by recording what now runs (for drift); and what came up is
verified with the same observations the smoke checks use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import allure

from ..inventory.model import Stack
from ..ledger import Outcome
from ..observe.drift import ONEOFF_LABEL, record_deployed
from ..observe.probes import probe_all
from ..observe.rollout import RolloutFigures
from ..observe.stackfiles import env_value, render_config, set_env_value
from ..orchestrators.containers import ContainerState, service_problems
from ..reach.hosts import HostAccess
from .history import History
from .locks import LockHeldError, StackLock
from .runner import RunnerClient, RunnerError

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["DeployError", "Deployment", "StackAction", "write_tag"]

log = logging.getLogger(__name__)


def write_tag(access: HostAccess, stack: Stack, env_text: str, version: str) -> None:
    """The env file as it was, with the stack's tag variable set to ``version``."""
    assert stack.image_tag_var
    log.info("%s: writing %s into %s of %s", stack.name, version, stack.image_tag_var,
             stack.env_path)  # fmt: skip
    access.write(stack.env_path, set_env_value(env_text, stack.image_tag_var, version))


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
    outcome: Outcome = Outcome.PENDING
    backup: str | None = None  # the backup taken before the tag was written
    rollback: str | None = None  # the version rolled back to, when it came to that
    rollout: RolloutFigures | None = None  # what users saw during `up`, when watched (E2E-3)


class StackAction:
    """What deploying, rolling back and restoring a stack share: its host, lock, history,
    timed phases, refusals, ``compose up`` and the verification of what came up.

    Each action is a subclass (:class:`~.deployer.Deployer`, :class:`~.operator.RollBack`,
    :class:`~.operator.Restore`) naming itself in ``action``; none changes another's."""

    action = "deploy"

    def __init__(self, run: Run, stack: Stack, version: str) -> None:
        if not stack.image_tag_var:
            raise DeployError(
                f"stack {stack.name} has no image_tag_var in the inventory: deployproof cannot "
                "tell which env variable carries the version"
            )
        self.run = run
        self.observed = run.observations
        self.masker = run.secrets()  # the stack's env values too: Compose echoes them
        self.stack = stack
        self.tag_var = stack.image_tag_var
        self.access = run.observations.access(stack.host)
        self.access.masker = self.masker  # the commands it logs, with this run's secrets masked
        self.engine = run.observations.engine(stack.host)
        self.orchestrator = run.observations.orchestrator(stack)
        state = run.inventory.state
        self.history = History(state.history, run.secrets())
        self.lock = StackLock(state.locks, stack.name)
        self.env = run.inventory.environment
        self.deployment = Deployment(stack.name, self.env, version, previous=None)
        self._original_env: str | None = None
        self.unrecorded: list[str] = []  # history lines a full or broken state disk refused

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        title = f"{self.action} {self.stack.name} {self.deployment.version}: {name}"
        log.debug("%s: %s %s: %s", self.stack.name, self.action, self.deployment.version, name)
        with allure.step(title):
            try:
                yield
                self.lock.check()  # every phase ends still holding the stack's lease
            except BaseException:
                self.deployment.phases.append((name, "fail", time.monotonic() - started))
                log.debug("%s: %s failed after %.1fs", self.stack.name, name,
                          time.monotonic() - started)  # fmt: skip
                raise
            self.deployment.phases.append((name, "ok", time.monotonic() - started))
            log.debug("%s: %s done in %.1fs", self.stack.name, name, time.monotonic() - started)

    def _through_runner(self, version: str) -> None:
        """DEP-8: the runner applies the tag; then the deployed state is recorded here."""
        runner = self.stack.runner
        assert runner is not None
        secret = os.environ.get(runner.secret_env, "")
        if not secret:
            raise DeployError(f"stack {self.stack.name} deploys through {runner.url}, but "
                              f"{runner.secret_env} is not set")  # fmt: skip
        client = RunnerClient(runner.url, secret, runner.timeout_s)
        log.info("%s: %s of %s through the runner %s", self.stack.name, self.action, version,
                 runner.url)  # fmt: skip
        try:
            who = f"deployproof run {self.lock.run_id}"
            note = client.deploy(self.env, version, triggered_by=who)
        except RunnerError as exc:
            raise DeployError(str(exc)) from None
        self.deployment.notes.append(note)
        self.observed.invalidate(self.stack)
        env_text = self.access.read(self.stack.env_path) or ""
        self._record_deployed(version, env_text)

    def _record_deployed(self, version: str | None, env_text: str) -> None:
        """What now runs, for the drift checks (DRF-1); a state disk that refuses it is
        reported, and does not undo or stop what was brought up."""
        self.orchestrator.refresh()  # the containers as `up` just left them
        containers = self.orchestrator.containers(self.stack)
        try:
            record_deployed(
                self.run.inventory.state, self.stack, self.access, version, env_text,
                containers=containers,
            )  # fmt: skip
        except OSError as exc:
            self.unrecorded.append(f"deployed state of {version} ({exc})")

    def _record(self, action: str, version: str, status: str, notes: str) -> None:
        """A history line on the way to a rollback: a state disk that refuses it must not
        stop the rollback itself, so what could not be written is kept and reported."""
        try:
            self.history.record(self.stack.name, self.env, action, version, status, notes=notes)
        except OSError as exc:
            self.unrecorded.append(f"{action} {version} {status} ({exc})")

    def _lease_for_rollback(self) -> str | None:
        """Hold the stack's lease for a rollback, or say who does: rolling back while another
        run holds it would have two runs write the env file and run ``compose up`` at once."""
        holder = self.lock.holder()
        if holder is not None and holder.run_id == self.lock.run_id:
            return None  # still ours (a renewal may have failed on a full disk: it is ours)
        try:
            self.lock.acquire(timeout_s=0)
        except LockHeldError as exc:
            return f"not rolled back: {exc}"
        except OSError as exc:
            return f"not rolled back: the stack's lease cannot be taken ({exc})"
        self.lock.lost = None
        return None

    def _restore_to(self, target: str, why: str) -> str:
        """Put ``target`` back, verify it and record the rollback; '' when it is sound,
        else what is wrong. The lease is held (or retaken) first, and the intent noted."""
        refused = self._lease_for_rollback()
        if refused is not None:
            log.warning("%s: %s", self.stack.name, self.masker(refused))
            self._record("rollback", target, "fail", f"{why}; {refused}")
            return refused
        log.info("%s: rolling back to %s (%s)", self.stack.name, target, self.masker(why))
        current = env_value(self._original_env or "", self.tag_var)
        with contextlib.suppress(OSError):  # a full state disk must not stop the rollback
            self.lock.mark_changing("rollback", target, current)
        try:
            problem = self._put_back(target)
        except Exception as exc:  # the host went away (Inconclusive), its disk is full, ...
            problem = self.masker(f"{type(exc).__name__}: {exc}")
        notes = why + (f"; verification: {problem}" if problem else "")
        if problem:
            log.warning("%s: rollback to %s failed: %s", self.stack.name, target,
                        self.masker(problem))  # fmt: skip
        self._record("rollback", target, "fail" if problem else "success", notes)
        return problem

    def _take_lock(self) -> str | None:
        """The stack's lease, or a refusal naming its holder (DEP-9), or a refusal of an
        orchestrator that cannot be trusted to apply; returns a reclaim note."""
        wait = self.run.settings.lock_wait_s
        log.info("%s: taking the lock%s", self.stack.name, f" (waiting up to {wait:g}s)" if wait
                 else "")  # fmt: skip
        try:
            note = self.lock.acquire(timeout_s=wait)
        except LockHeldError as exc:
            self._refuse(str(exc))
        log.info("%s: lock taken (run %s)%s", self.stack.name, self.lock.run_id,
                 f": {note}" if note else "")  # fmt: skip
        # Before anything changes, also the recovery of a dead run: can the host's
        # orchestrator be trusted to apply (Compose v2 that fails when it fails; a manager)?
        ready = self.observed.readiness(self.stack)
        if ready:
            self._refuse(ready)
        return note

    def _refuse(self, reason: str) -> NoReturn:
        """Stop before anything changed: record it and say so."""
        self.deployment.outcome = Outcome.REFUSED
        name, version = self.stack.name, self.deployment.version
        log.info("%s: %s of %s refused, nothing changed: %s", name, self.action, version,
                 self.masker(reason))  # fmt: skip
        self.history.record(name, self.env, self.action, version, "fail", notes=reason)
        raise DeployError(f"{self.action} of {name} {version} refused, nothing changed: {reason}")

    def _available_images(self, version: str) -> list[str]:
        """The images of ``version``, each on the host or in its registry; else refuse."""
        images = self._images_of(version)
        log.info("%s: checking that the %d images of %s exist", self.stack.name, len(images),
                 version)  # fmt: skip
        missing = self.engine.missing(images)
        if missing:
            self._refuse("; ".join(f"{image} is {where}" for image, where in missing.items()))
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
        started = time.monotonic()
        problem = self.orchestrator.apply(self.stack, self.run.inventory.up_timeout_s)
        took = time.monotonic() - started
        if problem is None:
            log.info("%s: up in %.1fs", self.stack.name, took)
        else:
            log.warning("%s: not healthy after %.1fs: %s", self.stack.name, took,
                        self.masker(problem))  # fmt: skip
        if problem is not None:
            raise DeployError(
                f"{self.orchestrator.apply_command} of {self.stack.name} "
                f"{self.deployment.version} did not become healthy: {self.masker(problem)}"
            )
        if self.stack.target == "compose":  # a swarm's convergence already compared images
            self.orchestrator.refresh()
            wrong = self._images_not_as_configured()
            if wrong:
                raise DeployError(
                    f"{self.orchestrator.apply_command} of {self.stack.name} "
                    f"{self.deployment.version} exited 0 but left " + self.masker("; ".join(wrong))
                )
        # What is now running, for the drift checks (DRF-1): the files' hash, Compose's hashes.
        env_text = self.access.read(self.stack.env_path) or ""
        self._record_deployed(env_value(env_text, self.tag_var), env_text)

    def _put_back(self, target: str) -> str:
        """Put ``target`` back and verify it; return what is still wrong ('' when sound)."""
        if self.stack.runner is not None:
            try:
                self._through_runner(target)
            except DeployError as exc:
                return str(exc)
            return self.verify()
        assert self._original_env is not None
        write_tag(self.access, self.stack, self._original_env, target)
        self.observed.invalidate(self.stack)
        try:
            self._up()
        except DeployError as exc:
            return str(exc)
        return self.verify()

    def current_version(self) -> str | None:
        return env_value(self.access.read(self.stack.env_path) or "", self.tag_var)

    def _images_not_as_configured(self) -> list[str]:
        """Containers running another image than the stack's files now name. Running and
        healthy is not enough: Compose can exit 0 from ``up --wait`` having created nothing
        (a pull that fails mid-way, "unknown blob"), leaving the previous version up and
        healthy, which would then be recorded as the new one verified. Every container of
        the project is compared, not only the services the inventory lists: a sidecar the
        inventory does not name is part of what was deployed too."""
        config, problem = render_config(self.stack, self.access, self.masker, env_file=True)
        if config is None:
            return [problem or "docker compose config gave nothing"]
        services = config.get("services") or {}
        wrong = []
        for container in self.orchestrator.containers(self.stack):
            if container.labels.get(ONEOFF_LABEL) == "True":
                continue  # a `compose run` left behind: not what `up` deploys
            expected = str((services.get(container.service) or {}).get("image") or "")
            if not expected:  # an orphan of a removed service, or one built, not pulled
                continue
            if container.image != expected and not self._is_image(container, expected):
                wrong.append(f"{container.describe()}: runs {container.image}, not {expected}")
        return sorted(wrong)

    def _is_image(self, container: ContainerState, image: str) -> bool:
        """A container listed by image id, not name (the engine does so once the tag it was
        created from has moved on) runs ``image`` when that is what the tag names now. A
        container listed by another *name* was not recreated, whatever its content."""
        listed_by_id = container.image.startswith("sha256:")
        return listed_by_id and container.image_id in self.engine.identity(image)

    def verify(self) -> str:
        """The smoke observations of the stack, judged: '' when every service is up and
        every endpoint answers."""
        try:
            version = self.current_version() or "?"
        except Exception:  # only for the log: the checks below say what is wrong
            version = "?"
        log.info("%s: verifying %s (services, endpoints)", self.stack.name, version)
        problems: list[str] = []
        self.orchestrator.refresh()
        states = {}
        for name, service in self.stack.services.items():
            states[name] = self.orchestrator.service(self.stack, name, self.run.inventory.probes)
            problems += service_problems(service, states[name])
        if self.stack.target == "compose":  # a swarm's convergence already compared images
            problems += self._images_not_as_configured()
        results = probe_all(((e.name, e) for e in self.stack.endpoints), self.run.inventory.probes)
        problems += [r.describe().splitlines()[0] for r in results.values() if not r.passed]
        if problems:
            log.warning("%s: %s is not sound: %s", self.stack.name, version,
                        self.masker("; ".join(problems)))  # fmt: skip
        else:
            log.info("%s: verified %s", self.stack.name, version)
        return "; ".join(problems)
