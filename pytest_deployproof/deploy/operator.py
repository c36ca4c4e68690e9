"""The operator's own actions on a stack (``deployproof rollback`` and ``restore``, DEP-12).

They take the same lock, refuse the same way and verify what came up exactly as a
failed deploy's automatic rollback does (:class:`~.stack_action.StackAction`).
"""

from __future__ import annotations

import logging

from .backups import BackupError, Backups
from .stack_action import DeployError, StackAction

__all__ = ["Restore", "RollBack"]

log = logging.getLogger(__name__)


class RollBack(StackAction):
    """Put a version (given at construction) back by hand."""

    action = "rollback"

    def roll_back(self) -> str:
        """Put ``version`` (given at construction) back by hand: lock, check, tag, up, verify,
        record. Raises :class:`DeployError` when refused; returns what was done."""
        version, name = self.deployment.version, self.stack.name
        log.info("%s: rollback to %s in %s, by hand", name, version, self.env)
        try:
            self._take_lock()
            env_text = self.access.read(self.stack.env_path)
            if env_text is None:
                self._refuse(f"env file {self.stack.env_path} does not exist")
            self._original_env = env_text
            self._available_images(version)
            verdict = self._restore_to(version, "by hand")
            if verdict:
                raise DeployError(
                    f"rolled {name} back to {version}, but it is not sound: {verdict}"
                )
            return f"{name}: rolled back to {version}, verified"
        finally:
            self.lock.release()
            log.debug("%s: lock released", name)


class Restore(StackAction):
    """Put a backup back: files and databases, then up and verify."""

    action = "restore"

    def restore(self, name: str | None) -> str:
        """Put a backup back: files and databases, then up and verify (DEP-3, DEP-12).

        Every file is checked against the manifest before anything is touched; each
        database is restored in one transaction, before the files, so a refusal or a
        failed database restore leaves the stack as it was."""
        files = self.observed.stack_files(self.stack.name)
        backups = Backups(self.stack, self.access, self.env, files.masker)
        try:
            self._take_lock()
            try:
                backup = backups.find(name)
                self.deployment.version = backup.version or "-"
                log.info("%s: restore from backup %s (version %s): checking its files",
                         self.stack.name, backup.name, backup.version or "unknown")  # fmt: skip
                damaged = backups.verify(backup)
                if damaged:
                    raise BackupError(f"backup {backup.name} is damaged: {'; '.join(damaged)}")
                self.lock.mark_changing("restore", backup.version or "-", None)
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
            log.debug("%s: lock released", self.stack.name)
