"""Deploying one stack, and rolling it back (DEP-1, DEP-2, DEP-4, DEP-9).

Phases, in order, each timed, recorded and shown as an Allure step: **lock**
the stack (a lease, see :mod:`.locks`) -> **preflight**: the stack's preflight
tests of this run passed, and every image of the new version exists on the
host or in its registry -> **backup** (:mod:`.backups`) -> **pull** -> **tag**:
write the new tag into the env file -> **migrate**: the declared one-off
command, in the new version (DEP-11) -> **up**: ``docker compose up --wait``.
Until the env file is written nothing on the host has changed, so a refusal
before that point leaves the old version serving and the env file as it was.

After the stack's tests, :meth:`Deployer.finish` records the outcome. Success
needs positive evidence: a check of the stack ran and passed, and none failed.
Any failed or erroring test, any exception or signal during the phases, or an
interrupted run means the new version does not stand: the stack goes back to the
last version that was verified good (from the history; else the tag it had
before), is verified with the same observations the smoke checks use, and both
the failed deploy and the rollback are recorded. Checks that could not decide
hold the version instead (see :meth:`Deployer.finish`). A run that finds the
lease of a run that died while changing the stack first records that and puts
the last good version back (:meth:`Deployer._recover`).
"""

from __future__ import annotations

import json
import logging
import shlex
import uuid
from typing import TYPE_CHECKING

import allure

from ..inventory.changes import repository_root
from ..inventory.load import load_environment
from ..inventory.model import Stack
from ..ledger import Outcome
from ..observe.docker_engine import PullError
from ..observe.drift import DeployedState, config_drift, config_hash
from ..observe.rollout import RolloutWatch
from ..observe.stackfiles import env_value, parse_env, set_env_value
from ..verdicts import CheckFailure, Verdict
from .backups import BackupError, Backups
from .locks import Lease
from .promotion import load_verified, promotion_problem, record_verified
from .signals import deferred
from .stack_action import DeployError, Deployment, StackAction, write_tag
from .versions import is_tag

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["DeployError", "Deployer", "Deployment"]

log = logging.getLogger(__name__)


class Deployer(StackAction):
    """Deploys ``version`` of one stack for one run, then records and undoes as needed."""

    action = "deploy"

    def __init__(self, run: Run, stack: Stack, version: str) -> None:
        super().__init__(run, stack, version)
        self.signals: list[int] = []  # SIGINT/SIGTERM held while finishing
        self._identities: dict[str, list[str]] = {}  # image -> what it is (DEP-5)
        self._config_hash = ""

    # -- deploy -------------------------------------------------------------

    def deploy(self) -> Deployment:
        """Run the phases up to a running new version; raise :class:`DeployError` if not."""
        version = self.deployment.version
        log.info("%s: deploying %s to %s (host %s)", self.stack.name, version, self.env,
                 self.stack.host)  # fmt: skip
        with self._phase("lock"):
            note = self._take_lock()
            self.lock.start_heartbeat()
            if note:
                self.deployment.notes.append(note)
        dead = self.lock.reclaimed
        if dead is not None and dead.changed:
            with self._phase("recover"):
                self._recover(dead)
        env_text = self.access.read(self.stack.env_path)
        if env_text is None:
            self._refuse(f"env file {self.stack.env_path} does not exist on host {self.stack.host}")
        self._original_env = env_text
        self.deployment.previous = env_value(env_text, self.tag_var)

        log.info("%s: preflight (the stack's checks, disk, images of %s; %s runs now)",
                 self.stack.name, version, self.deployment.previous or "nothing")  # fmt: skip
        with self._phase("preflight"):
            failed = self.run.ledger.failures_of(self.stack.name)
            if failed:
                self._refuse(f"preflight failed: {', '.join(map(str, failed[:5]))}")
            self._disk_free()
            problem = self.observed.stack_files(self.stack.name).problem
            if problem:  # e.g. Compose would name the project otherwise: a second copy
                self._refuse(problem)
            self._refuse_a_second_copy()
            images = self._available_images(version)
            self._identities = {image: self.engine.identity(image) for image in images}
            self._check_promotion()
            if self._unchanged(env_text):
                return self.deployment
        with self._phase("backup"):
            self._backup()
        if self.stack.runner is not None:
            with self._phase("runner"):
                self.lock.mark_changing("deploy", version, self.deployment.previous)
                self.deployment.changed = True  # from here on, a failure rolls back
                self._through_runner(version)
            return self.deployment
        self._apply_locally(images, env_text)
        return self.deployment

    def _recover(self, dead: Lease) -> None:
        """A run that died while changing the stack (SIGKILL, a lost machine) left it
        half-changed and unverified: record that, and put the last good version back,
        verified, before this deploy starts (docs/requirements.md#tru-1)."""
        name = self.stack.name
        why = f"interrupted: run {dead.run_id} (pid {dead.pid}) died while it {dead.action}ed"
        log.warning("%s: %s %s: putting the last good version back first", name, why,
                    dead.version)  # fmt: skip
        self.history.record(name, self.env, dead.action, dead.version, "fail", notes=why)
        last = self.history.last_good(name, self.env)
        target = last.version if last is not None else dead.previous or None
        if target is None:
            self._refuse(f"{why} {dead.version}, and no earlier version is known to restore")
        self._original_env = self.access.read(self.stack.env_path) or ""
        problem = self._restore_to(target, f"after the interrupted {dead.action} of {dead.version}")
        if problem:
            version = self.deployment.version
            reason = f"the interrupted {dead.version} could not be rolled back to {target}"
            self.history.record(name, self.env, "deploy", version, "fail", notes=reason)
            self.deployment.outcome = Outcome.REFUSED
            raise DeployError(f"deploy of {name} {version} refused: {reason}: {problem}")
        self.deployment.notes.append(
            f"the interrupted {dead.action} of {dead.version} was rolled back to {target}, verified"
        )

    def _apply_locally(self, images: list[str], env_text: str) -> None:
        """Pull, write the tag, migrate, ``compose up --wait``: the stack's own host does it."""
        version = self.deployment.version
        log.info("%s: pulling %d images", self.stack.name, len(images))
        with self._phase("pull"):
            try:
                for image in images:
                    self.engine.pull(image)
            except PullError as exc:
                self._refuse(str(exc))
        with self._phase("tag"):
            self.lock.mark_changing("deploy", version, self.deployment.previous)
            # Changed from now on, even if the write is interrupted after it took effect:
            # rolling back an env file that was not changed is harmless, the reverse is not.
            self.deployment.changed = True
            write_tag(self.access, self.stack, env_text, version)
            self.observed.invalidate(self.stack)
        if self.stack.migration is not None:
            log.info("%s: migrating: `%s` in service %s of %s", self.stack.name,
                     self.masker(self.stack.migration.command), self.stack.migration.service,
                     version)  # fmt: skip
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
        verified = load_verified(source.state, self.stack.name)
        problem = promotion_problem(verified, version, self._identities, promotion.source)
        if problem and not force:
            self._refuse(f"{problem} (--force REASON to deploy it anyway)")
        if problem:
            self.deployment.notes.append(f"forced: {force} ({problem})")

    def _unchanged(self, env_text: str) -> bool:
        """DEP-7: the same config as deployed (files + env with this version), and the
        containers as deployed: nothing to do, and nothing is touched."""
        recorded = DeployedState.load(self.run.inventory.state, self.stack.name)
        if recorded is None:
            return False
        compose_text = self.access.read(self.access.compose_file(self.stack)) or ""
        wanted = set_env_value(env_text, self.tag_var, self.deployment.version)
        self._config_hash = config_hash(compose_text, parse_env(wanted))
        if self._config_hash != recorded.config_hash:
            return False
        self.orchestrator.refresh()
        running = self.orchestrator.containers(self.stack)
        if not running:
            return False  # recorded, but not running (taken down since): deploy it
        current = {ids[0] for ids in self._identities.values() if ids}
        if any(c.image_id and c.image_id not in current for c in running):
            return False  # the same tag now names other content: not the same deployment
        drifted = config_drift(self.stack, recorded, self._config_hash, running)
        if drifted:
            return False
        self.deployment.outcome = Outcome.UNCHANGED
        self.deployment.notes.append(
            f"{self.deployment.version}: config hash {self._config_hash[:12]} is the deployed "
            "one; nothing to do"
        )
        log.info("%s: %s", self.stack.name, self.deployment.notes[-1])
        return True

    def _refuse_a_second_copy(self) -> None:
        """Without ``project:`` a stack is its directory's Compose project; deployproof
        0.1 named it after the stack. Containers still running under that older name mean
        a deploy now would start a second copy beside them, with fresh volumes."""
        stack = self.stack
        old = stack.name.lower()
        if stack.target != "compose" or stack.project or old == stack.project_name:
            return
        containers = self.observed.containers(stack.host)
        containers.refresh()
        if containers.projects().get(old):
            self._refuse(
                f"containers of Compose project {old!r} run on host {stack.host}, but the "
                f"stack's project is {stack.project_name!r} (its directory's name, as Compose "
                f"names it): set `project: {old}` for stack {stack.name} in the inventory, "
                "or a deploy would start a second copy beside them"
            )

    def _disk_free(self) -> None:
        """PRE-5 for the stack's host, whether or not its disk test was selected."""
        host = self.run.inventory.hosts[self.stack.host]
        shortage = self.observed.disk_usage(self.stack.host).shortage(host)
        if shortage:
            self._refuse(shortage)

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
        log.info("%s: backup %s taken", self.stack.name, taken.name)
        allure.attach(
            json.dumps(taken.manifest, indent=2),
            name=f"backup {taken.name} manifest",
            attachment_type=allure.attachment_type.JSON,
        )
        last_good = self.history.last_good(self.stack.name, self.env)
        pruned = backups.prune(self.stack.backup.keep, last_good.version if last_good else None)
        if pruned:
            log.info("%s: %d old backups removed (keeping %d)", self.stack.name, len(pruned),
                     self.stack.backup.keep)  # fmt: skip

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

    # -- after the tests ----------------------------------------------------

    def finish(
        self, failures: list[CheckFailure], *, deploy_error: str | None, evidence: int
    ) -> str:
        """Record the outcome; roll back and verify when anything failed. Never raises;
        SIGINT and SIGTERM wait until it is done (``signals`` tells the caller of any).

        Success needs positive evidence: no failure, no error, and at least one of the
        stack's checks ran and passed (``evidence``). Checks that could not decide (all
        inconclusive, or none passed) hold the version: not verified, not promoted, not
        rolled back, unless the inventory says ``on_inconclusive: rollback``."""
        with deferred(f"recording the deploy of {self.stack.name}") as self.signals:
            try:
                summary = self._finish(failures, deploy_error, evidence)
            except Exception as exc:  # a teardown must not hide the verdict behind a traceback
                self.deployment.outcome = Outcome.ERROR
                summary = f"{self.stack.name}: finishing the deploy failed: {exc}"
            finally:
                self.lock.release()
                log.debug("%s: lock released", self.stack.name)
            log.info("%s", self.masker(summary))
            if self.unrecorded:
                summary += f"; NOT RECORDED (state directory): {'; '.join(self.unrecorded)}"
            return summary

    def _finish(self, failures: list[CheckFailure], deploy_error: str | None, evidence: int) -> str:
        version, name = self.deployment.version, self.stack.name
        if self.deployment.outcome is Outcome.REFUSED:
            return deploy_error or f"{name}: deploy of {version} refused, nothing changed"
        inconclusive = bool(failures) and all(f.verdict is Verdict.INCONCLUSIVE for f in failures)
        proven = not failures and deploy_error is None and evidence > 0
        undecided = deploy_error is None and (inconclusive or (not failures and evidence == 0))
        if undecided and self.run.inventory.on_inconclusive == "hold":
            return self._held(failures)
        if self.deployment.outcome is Outcome.UNCHANGED:
            return self._skipped(failures, proven=proven)
        if proven:
            return self._succeeded()
        return self._failed(failures, deploy_error, inconclusive=inconclusive)

    def _held(self, failures: list[CheckFailure]) -> str:
        """BYD-1: nothing decided either way. The version stays; it is neither verified (so
        never promoted) nor rolled back, and the history says inconclusive."""
        version, name = self.deployment.version, self.stack.name
        if failures:
            reason = f"{len(failures)} checks inconclusive: {', '.join(map(str, failures[:3]))}"
        else:
            reason = "no check of the stack ran and passed"
        log.info("%s: %s held, not verified: %s", name, version, reason)
        self.history.record(name, self.env, "deploy", version, "inconclusive", notes=reason)
        self.deployment.outcome = Outcome.HELD
        return f"{name}: {version} HELD, not verified ({reason}): not promotable, not rolled back"

    def _failed(
        self, failures: list[CheckFailure], deploy_error: str | None, *, inconclusive: bool
    ) -> str:
        """Roll back to the last good version, verify it, and record both lines. The
        rollback comes first: a history that cannot be written must not prevent it."""
        version, name = self.deployment.version, self.stack.name
        reason = deploy_error or (
            f"{len(failures)} checks failed: {', '.join(map(str, failures[:3]))}"
            if failures
            else "no check of the stack ran and passed"
        )
        status = "inconclusive" if inconclusive and deploy_error is None else "fail"
        log.info("%s: %s failed: %s", name, version, self.masker(reason))
        if not self.deployment.changed:
            self._record("deploy", version, status, reason)
            return f"{name}: deploy of {version} failed before anything changed ({reason})"
        target = self._rollback_target()
        if target is None:
            self.deployment.outcome = Outcome.ROLLBACK_FAILED
            self._record("deploy", version, status, reason)
            self._record("rollback", "-", "fail", "no previous version known")
            return f"{name}: {version} failed and there is no previous version to roll back to"
        self.deployment.rollback = target
        self._record("deploy", version, status, reason)
        problem = self._restore_to(target, f"after {version}: {reason}")
        self.deployment.outcome = Outcome.ROLLBACK_FAILED if problem else Outcome.ROLLED_BACK
        if not problem:
            return f"{name}: {version} failed ({reason}); rolled back to {target}, verified"
        return (
            f"{name}: {version} failed; ROLLBACK TO {target} FAILED: {problem}; when the host "
            f"answers again: deployproof rollback --env {self.env} {name} --last-good"
        )

    def _skipped(self, failures: list[CheckFailure], *, proven: bool) -> str:
        """Nothing was deployed; the checks still judged what runs. Proven by them, it
        counts as good (a run killed after `up` leaves a version that was never verified)."""
        version, name = self.deployment.version, self.stack.name
        if proven:
            verdict = "verified"
        elif failures:
            verdict = f"{len(failures)} checks failed"
        else:
            verdict = "not verified: no check of the stack ran and passed"
        notes = f"skipped: config {self._config_hash[:12]} already deployed; {verdict}"
        self.history.record(name, self.env, "deploy", version, "success" if proven else "fail",
                            notes=notes)  # fmt: skip
        if proven:
            record_verified(self.run.inventory.state, name, version, self._identities)
        else:
            self.deployment.outcome = Outcome.UNVERIFIED
        return f"{name}: {version} is already deployed (same config hash): skipped, {verdict}"

    def _succeeded(self) -> str:
        version, name = self.deployment.version, self.stack.name
        notes = [f"backup {self.deployment.backup}"] if self.deployment.backup else []
        notes += [n for n in self.deployment.notes if n.startswith("forced:")]
        log.info("%s: verified %s", name, version)
        self.history.record(name, self.env, "deploy", version, "success", notes="; ".join(notes))
        record_verified(self.run.inventory.state, name, version, self._identities)
        self.deployment.outcome = Outcome.SUCCESS
        return f"{name}: {version} deployed and verified"

    def _rollback_target(self) -> str | None:
        last = self.history.last_good(self.stack.name, self.env)
        if last is not None and last.version != self.deployment.version:
            return last.version
        previous = self.deployment.previous
        return previous if previous and previous != self.deployment.version else None
