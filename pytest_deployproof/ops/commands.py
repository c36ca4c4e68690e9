"""Pull-request comment commands (CMT-1): parsed against allow-lists.

A comment is untrusted input. Its first line, starting at column 0 (an indented
line is a markdown code block, quoted, not said), must be exactly one command with
at most one argument (``/apply <env>`` and ``/revert <env>`` of an environment that
needs an approval, every one but staging, also name the commit:
``/apply production <sha>``, ``/revert production <sha>``); a
comment holding two commands runs neither; the argument must be one of a fixed
set of ASCII words (no normalisation: a look-alike letter is another word; the
environments are the inventory's, ``inventories/<env>.yml``). What a command does
is a fixed mapping to pytest arguments built here; nothing from the comment ever
becomes a pytest option, a path or part of a shell command by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["HELP", "LAYERS", "Command", "HelpNeeded", "parse"]

LAYERS = ("bootstrap", "platform", "data-staging", "data-prod", "all")
CHECKS = ("smoke", "health", "preflight", "drift")
ENVIRONMENTS = ("staging", "production")  # when the hook is not told the inventory's
# The one environment `/apply` deploys to (and `/revert` rolls back) without an approval;
# every other one the inventory names (production, prod, ...) is changed only with the head
# named and approved: a rollback of production changes production as much as an apply does.
UNAPPROVED = "staging"
MAX_BODY = 65_536
ALIASES = {
    "atlantis plan": "/plan",
    "atlantis apply": "/apply",
    "infra plan": "/plan",
    "infra apply": "/apply",
    "infra dig": "/health",
    "infra health": "/health",
    "infra e2e": "/e2e",
}
_WORD = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_SHA = re.compile(r"[0-9a-f]{7,40}")

HELP = """\
**deployproof commands** (one per comment, on its first line):

| command | does |
|:---|:---|
| `/e2e [smoke\\|health\\|preflight\\|<suite>]` | runs the checks or an E2E suite against staging |
| `/health [layer]` | health probes (layers: bootstrap, platform, data-staging, data-prod, all) |
| `/plan [layer]` | drift: does what runs match the repository? |
| `/apply staging\\|<layer>` | deploys this commit to staging |
| `/apply <env> <sha>` | deploys the head `<sha>` to production (any env but staging), approved |
| `/revert [staging]` | rolls staging back to its last good version |
| `/revert <env> <sha>` | rolls `<env>` (any env but staging) back, the head `<sha>` approved |
| `/help` | this list |

Aliases: `atlantis plan`, `atlantis apply`, `infra dig`, `infra e2e`.
"""


class HelpNeeded(Exception):
    """The comment is not a command we run; the message says why (answered with /help)."""


@dataclass(frozen=True)
class Command:
    name: str  # e2e, health, plan, apply, revert, help
    argument: str | None
    environment: str = "staging"
    pytest_args: tuple[str, ...] = field(default=())
    sha: str | None = None  # the commit `/apply production <sha>` (or `/revert`) names

    @property
    def deploys(self) -> bool:
        return self.name in ("apply", "revert")

    @property
    def needs_approval(self) -> bool:
        """An apply or a revert of any environment but staging: the named head, approved by
        another (a rollback of production changes production as much as an apply)."""
        return self.deploys and self.environment != UNAPPROVED

    @property
    def stage(self) -> str:
        """The dashboard row this command fills."""
        label = {"e2e": "E2E", "health": "Health", "plan": "Plan", "apply": "Apply"}
        title = label.get(self.name, self.name.capitalize())
        return f"{title}: {self.argument}" if self.argument else title


def _is_command(line: str) -> bool:
    lowered = line.lower()
    return line.startswith("/") or any(
        lowered == alias or lowered.startswith(alias + " ") for alias in ALIASES
    )


def _first_line(body: str) -> str | None:
    """The first non-blank line, when it is at column 0 (else ``None``: not said to us)."""
    if len(body) > MAX_BODY:
        raise HelpNeeded("the comment is too long to be a command")
    lines = [line.rstrip() for line in body.splitlines() if line.strip()]
    if not lines:
        return None
    commands = [line for line in lines if _is_command(line)]
    if len(commands) > 1 and _is_command(lines[0]):
        raise HelpNeeded("one command per comment: this one holds more, so none of them ran")
    return lines[0] if _is_command(lines[0]) else None


def parse(
    body: str, suites: tuple[str, ...] = (), environments: tuple[str, ...] = ENVIRONMENTS
) -> Command | None:
    """The command in ``body``; ``None`` when the comment is not addressed to us (ordinary
    discussion); :class:`HelpNeeded` when it is, but is not something we run.
    ``environments`` are those ``/apply`` and ``/revert`` may name (the inventory's)."""
    line = _first_line(body)
    if line is None:
        return None
    lowered = line.lower()
    for alias, command in ALIASES.items():
        if lowered == alias or lowered.startswith(alias + " "):
            line = command + line[len(alias) :]
            break
    if not line.startswith("/"):
        return None
    words = line.split(" ")
    sha = None
    approved_only = [env for env in environments if env != UNAPPROVED]
    if (
        len(words) == 3
        and words[0] in ("/apply", "/revert")
        and words[1] in approved_only
        and _SHA.fullmatch(words[2])
    ):
        sha = words.pop()
    if any(not word for word in words) or len(words) > 2:
        raise HelpNeeded(f"`{_quote(line)}` is not a command I know")
    name, argument = words[0][1:], (words[1] if len(words) == 2 else None)
    if not name.isascii() or (argument is not None and not _WORD.fullmatch(argument)):
        raise HelpNeeded(f"`{_quote(line)}` is not a command I know")
    if name == "apply" and argument in approved_only:
        if sha is None:
            raise HelpNeeded(
                f"`/apply {argument}` names the commit it deploys: `/apply {argument} <sha>` "
                "(the pull request's head, 7 to 40 hex digits)"
            )
        return Command("apply", argument, argument, ("-m", "smoke or health"), sha=sha)
    if name == "revert":
        return _revert(argument, environments, sha)
    builders = {
        "e2e": _e2e,
        "health": _health,
        "plan": _plan,
        "apply": _apply,
        "help": _help,
    }
    if name not in builders:
        raise HelpNeeded(f"`/{_quote(name)}` is not a command I know")
    return builders[name](argument, suites)


def _quote(text: str) -> str:
    """Echo a bit of untrusted text safely inside a markdown code span."""
    return re.sub(r"[^A-Za-z0-9 /._-]", "?", text[:60])


def _layer_args(argument: str | None) -> tuple[str, ...]:
    if argument is None or argument == "all":
        return ()
    if argument not in LAYERS:
        raise HelpNeeded(f"`{argument}` is not a layer: {', '.join(LAYERS)}")
    return ("--dp-layer", argument)


def _e2e(argument: str | None, suites: tuple[str, ...]) -> Command:
    if argument is None:
        return Command("e2e", None, pytest_args=("-m", "smoke or health"))
    if argument in CHECKS:
        return Command("e2e", argument, pytest_args=("-m", argument))
    if argument in suites:
        return Command("e2e", argument, pytest_args=("--dp-suite", argument))
    known = ", ".join((*CHECKS, *suites))
    raise HelpNeeded(f"`{argument}` is not a check or an E2E suite: {known}")


def _health(argument: str | None, suites: tuple[str, ...]) -> Command:
    return Command("health", argument, pytest_args=("-m", "health", *_layer_args(argument)))


def _plan(argument: str | None, suites: tuple[str, ...]) -> Command:
    return Command("plan", argument, pytest_args=("-m", "drift", *_layer_args(argument)))


def _apply(argument: str | None, suites: tuple[str, ...]) -> Command:
    if argument is None:
        raise HelpNeeded("`/apply` needs where: staging, production or a layer")
    if argument == UNAPPROVED:
        return Command("apply", argument, argument, ("-m", "smoke or health"))
    return Command("apply", argument, "staging", ("-m", "smoke or health", *_layer_args(argument)))


def _revert(argument: str | None, environments: tuple[str, ...], sha: str | None) -> Command:
    """``/revert`` is staging's; another environment is named with the approved head, as
    ``/apply`` names it, because the rollback changes that environment as much."""
    known = ", ".join(environments) or "none"
    if argument is None:
        if UNAPPROVED not in environments:
            raise HelpNeeded(
                f"`/revert` rolls back {UNAPPROVED}, which the inventory does not have: "
                f"name the environment, `/revert <env> <sha>` (the inventory has {known})"
            )
        return Command("revert", None)
    if argument not in environments:
        raise HelpNeeded(f"`/revert` takes an environment: {known}")
    if argument != UNAPPROVED and sha is None:
        raise HelpNeeded(
            f"`/revert {argument}` names the approved commit: `/revert {argument} <sha>` "
            "(the pull request's head, 7 to 40 hex digits)"
        )
    return Command("revert", argument, argument, sha=sha)


def _help(argument: str | None, suites: tuple[str, ...]) -> Command:
    return Command("help", None)
