"""A stack's compose file and env file as they are on its host (PRE-3, PRE-8).

Three readings of the same files are kept apart, because each answers a
different question: the raw compose YAML (is a secret written into it?), the
env file (are the required keys set?), and ``docker compose config`` (does
Compose accept the pair, and what will it run?). The resolved config holds
secret values, so it is parsed and never printed.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable
from typing import Any

import yaml
from dotenv import dotenv_values

from ..errors import Inconclusive
from ..inventory.model import Stack
from ..reach.hosts import HostAccess
from ..secrets import Masker

__all__ = ["StackFiles", "env_value", "observe_stack_files", "parse_env", "set_env_value"]


class StackFiles:
    """A stack's files as read from its host; what Compose renders of them is asked for
    only when a check needs it (``config``, ``problem``): reading the files is a file read,
    rendering is a Compose process (~130 ms), and drift of an unchanged stack needs none."""

    def __init__(  # noqa: PLR0917 - the fields in order, as a dataclass would take them
        self,
        stack: str,
        compose_raw: dict[str, Any] | None,  # the YAML as written; None: missing or unparseable
        env: dict[str, str | None] | None,  # None when the env file does not exist
        config: dict[str, Any] | None,  # `docker compose config`; None when Compose refused
        problem: str | None,  # why the compose file could not be used, secrets masked
        masker: Masker,
        *,
        render: Callable[[], tuple[dict[str, Any] | None, str | None]] | None = None,
    ) -> None:
        self.stack = stack
        self.compose_raw = compose_raw
        self.env = env
        self.masker = masker
        self._rendered = (config, problem) if render is None else None
        self._render = render
        self._lock = threading.Lock()
        self.compose_text: str | None = None  # the files as read, when they were
        self.env_text: str | None = None
        self.compose_name = "the compose file"  # its file name, once it was found

    def _rendering(self) -> tuple[dict[str, Any] | None, str | None]:
        with self._lock:
            if self._rendered is None:
                assert self._render is not None
                self._rendered = self._render()
            return self._rendered

    @property
    def config(self) -> dict[str, Any] | None:
        return self._rendering()[0]

    @property
    def problem(self) -> str | None:
        return self._rendering()[1]

    @property
    def services(self) -> dict[str, Any]:
        return dict((self.config or {}).get("services") or {})


def parse_env(text: str) -> dict[str, str | None]:
    """An env file's keys and values, as Compose reads them (no interpolation)."""
    return dict(dotenv_values(stream=io.StringIO(text), interpolate=False))


def observe_stack_files(stack: Stack, access: HostAccess, masker: Masker) -> StackFiles:
    """The stack's files now; Compose renders them when first asked (see StackFiles)."""
    env_text = access.read(stack.env_path)
    env = parse_env(env_text) if env_text is not None else None
    masker = masker.with_env(env or {})

    def refused(problem: str, raw: object = None) -> StackFiles:
        return StackFiles(
            stack.name, raw if isinstance(raw, dict) else None, env, None, problem, masker
        )

    compose_path = access.compose_file(stack)
    compose_text = access.read(compose_path)
    if compose_text is None:
        return refused(_no_compose_file(stack))
    try:
        raw = yaml.safe_load(compose_text)
    except yaml.YAMLError as exc:
        return refused(f"{compose_path} is not valid YAML: {masker(str(exc))}")

    def render() -> tuple[dict[str, Any] | None, str | None]:
        return render_config(stack, access, masker, env_file=env is not None)

    files = StackFiles(
        stack.name, raw if isinstance(raw, dict) else None, env, None, None, masker, render=render
    )
    files.compose_text, files.env_text = compose_text, env_text
    files.compose_name = compose_path.name
    return files


def _no_compose_file(stack: Stack) -> str:
    if stack.compose:
        return f"compose file {stack.compose_candidates[0]} does not exist on host {stack.host!r}"
    names = ", ".join(path.name for path in stack.compose_candidates)
    return (
        f"no compose file in {stack.run_dir} on host {stack.host!r} (looked for {names}); "
        f"set `compose:` for stack {stack.name} if it has another name"
    )


def render_config(
    stack: Stack, access: HostAccess, masker: Masker, *, env_file: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """``docker compose config`` of the stack: the config, or why Compose refused it."""
    done = access.compose(stack, "config", "--format", "json", env_file=env_file)
    if done.rc in (126, 127):  # the shell found no Compose to run: the host's fault, not the file's
        lines = done.stderr.strip().splitlines()
        raise Inconclusive(
            f"cannot run Compose on host {stack.host!r}: `{' '.join(access.compose_command())}`"
            f" exited {done.rc}{': ' + lines[-1] if lines else ''}; install Compose v2 there "
            f"or set hosts.{stack.host}.compose"
        )
    # Compose 2.40 exits 0 when schema validation fails, printing nothing on
    # stdout: a refusal is a non-zero exit *or* no JSON document.
    try:
        config = json.loads(done.stdout) if done.rc == 0 else None
    except ValueError:
        config = None
    if not isinstance(config, dict):
        lines = done.stderr.strip().splitlines()
        reason = masker(lines[-1] if lines else f"exit code {done.rc}, no output")
        return None, f"docker compose config rejects {access.compose_file(stack)}: {reason}"
    named = config.get("name")
    if not stack.project and named and named != stack.project_name:
        return None, (
            f"Compose names this project {named!r} (the compose file's `name:` or "
            f"COMPOSE_PROJECT_NAME), but deployproof would look for {stack.project_name!r} "
            f"(from the directory): set `project: {named}` for stack {stack.name} in the "
            "inventory"
        )
    return config, None


def env_value(text: str, key: str) -> str | None:
    """The value ``key`` has in ``text`` (an env file) as Compose reads it: quotes, inline
    comments (``TAG=v1.2.0  # pinned``), ``export`` and a repeated key (the last one
    wins) all as the dotenv format says; ``None`` when unset."""
    return parse_env(text).get(key)


def set_env_value(text: str, key: str, value: str) -> str:
    """``text`` (an env file) with ``key`` set to ``value``; other lines untouched. Every
    line that sets ``key`` is rewritten, so a repeated key cannot keep an old value in
    the line Compose reads (the last)."""
    line = f"{key}={value}"
    pattern = re.compile(rf"^([ \t]*(?:export\s+)?){re.escape(key)}\s*=.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: (m.group(1) or "") + line, text)
    return text + ("" if not text or text.endswith("\n") else "\n") + line + "\n"
