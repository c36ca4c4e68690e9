"""``deployproof serve`` and ``deployproof trend``: the argument parsing and the wiring.

Kept light (argparse only at import): ``cli.py`` imports it in every command, and the
server's imports (prometheus_client, sqlite3, the inventory model) are paid only by the
commands that use them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..progress import add_verbosity

if TYPE_CHECKING:
    from ...report.run_history import History

__all__ = ["add_parsers", "parse_duration"]

SERVE_EPILOG = """\
examples:
  deployproof serve --env prod                         # smoke and health every 60 s, :9464
  deployproof serve --env prod -m smoke --stack web --interval 30s
  DEPLOYPROOF_SERVE_TOKEN=... deployproof serve --env prod --token-env DEPLOYPROOF_SERVE_TOKEN
  curl -s 127.0.0.1:9464/healthz?format=text          # 200 healthy; 503 failed, inconclusive,
                                                       # stale (older than 2 intervals), unknown
  curl -s 127.0.0.1:9464/healthz/web                   # one stack
  curl -s -X POST 127.0.0.1:9464/run                   # run now (joins a run in flight)
  curl -s 127.0.0.1:9464/metrics                       # Prometheus text format

Each run is `pytest --dp-env ENV -m EXPR [--dp-stack ...]` in a subprocess from this
directory (its conftest files and ini apply), killed at --timeout; runs never overlap.
Every run is kept in the state directory (serve-runs.sqlite3) for --keep-days, which
`deployproof trend` reads.
"""

TREND_EPILOG = """\
examples:
  deployproof trend --env prod web                    # each check of web over the last 100 runs
  deployproof trend --env prod web --runs 20 --json

--json prints a list, one object per check:
  [{"id": "...test_smoke.py::test_service_running[prod/platform/web/web]", "stack": "web",
    "kind": "smoke", "check": "service_running/web", "runs": 20, "passed": 19,
    "pass_rate": 0.95, "p50_elapsed_s": null, "p95_elapsed_s": null, "flaky_score": 0.1,
    "flaky": false, "events": 2, "retried": 0, "flips": 2}, ...]
"""

_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``60s``, ``1.5m``, ``500ms``, ``2h`` or plain seconds, as seconds (argparse type)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or float(found["number"]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration such as 60s, 2m or 500ms")
    return float(found["number"]) * _UNITS[found["unit"]]


def _flaky_rule(text: str) -> Any:
    from ...report.run_history import FlakyRule  # noqa: PLC0415

    try:
        return FlakyRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _environment(command: argparse.ArgumentParser) -> None:
    env = os.environ.get("DEPLOYPROOF_ENV") or None  # as the pytest plugin reads it
    command.add_argument(
        "--env", default=env, required=env is None, help="the environment ($DEPLOYPROOF_ENV)"
    )
    command.add_argument("--inventory", default="inventories", help="file or directory")
    add_verbosity(command, inherit=True)


def add_parsers(commands: Any) -> None:
    """Register ``serve`` and ``trend`` on the CLI's subcommands."""
    serve = commands.add_parser(
        "serve",
        help="run the checks on an interval; serve /healthz and Prometheus /metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SERVE_EPILOG,
    )
    _environment(serve)
    serve.add_argument(
        "-m", dest="marker", default="smoke or health", metavar="EXPR",
        help="pytest's marker expression: which checks (default: 'smoke or health')",
    )  # fmt: skip
    serve.add_argument(
        "--stack", action="append", default=[], help="only these stacks (globs, repeatable)"
    )
    serve.add_argument(
        "--interval", type=parse_duration, default=60.0, metavar="DURATION",
        help="time between the starts of two runs (default: 60s)",
    )  # fmt: skip
    serve.add_argument(
        "--timeout", type=parse_duration, default=None, metavar="DURATION",
        help="a run still going after this is killed, its verdict inconclusive "
        "(default: the larger of 60s and two intervals)",
    )  # fmt: skip
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback)"
    )
    serve.add_argument("--port", type=int, default=9464, help="port to listen on (default: 9464)")
    serve.add_argument(
        "--token-env", metavar="NAME",
        help="require 'Authorization: Bearer <token>', the token read from this variable",
    )  # fmt: skip
    serve.add_argument(
        "--flaky", type=_flaky_rule, default="3/10", metavar="N/M",
        help="flaky: passed after retries or flipped in N of the last M runs (default: 3/10)",
    )  # fmt: skip
    serve.add_argument(
        "--keep-days", type=float, default=14.0, metavar="DAYS",
        help="how long runs are kept in the state directory (default: 14)",
    )  # fmt: skip
    serve.set_defaults(run=serve_command)

    trend = commands.add_parser(
        "trend",
        help="each check's pass rate, p50/p95 time and flakiness over past serve runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=TREND_EPILOG,
    )
    _environment(trend)
    trend.add_argument("stack")
    trend.add_argument("--runs", type=int, default=100, help="the last this many runs")
    trend.add_argument(
        "--flaky", type=_flaky_rule, default="3/10", metavar="N/M",
        help="flaky: N of the last M runs (default: 3/10)",
    )  # fmt: skip
    trend.add_argument(
        "--json", action="store_true", help="each check as one JSON document (fields: see below)"
    )
    trend.set_defaults(run=trend_command)


def serve_command(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; exit 2 when the inventory, selection or token is wrong."""
    from ...inventory.load import InventoryError, load_environment  # noqa: PLC0415
    from ...inventory.selection import SelectionError, select  # noqa: PLC0415
    from ...report.run_history import History  # noqa: PLC0415
    from ...secrets import Masker  # noqa: PLC0415
    from ..serving import serve_until_stopped  # noqa: PLC0415 - the servers' shared stop
    from .http import ServeServer  # noqa: PLC0415
    from .runs import RunCommand, Runs  # noqa: PLC0415

    inventory_path = Path(args.inventory).resolve()
    stacks = tuple(s.strip() for value in args.stack for s in value.split(",") if s.strip())
    try:
        inventory = load_environment(inventory_path, args.env)
        selection = select(inventory, stacks=stacks)
    except (InventoryError, SelectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            print(f"error: --token-env {args.token_env}: the variable is empty or unset",
                  file=sys.stderr)  # fmt: skip
            return 2
    masker = Masker().with_env(dict(os.environ))  # the token, and whatever looks secret here
    if inventory.secrets_prefix:
        prefix = inventory.secrets_prefix
        masker = masker.plus(*(v for k, v in os.environ.items() if k.startswith(prefix) and v))
    history = History(inventory.state.serve_runs, args.keep_days * 86400)
    problem = _unwritable(history)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    runs = Runs(
        RunCommand(args.env, inventory_path, args.marker, stacks, Path.cwd()),
        interval_s=args.interval,
        timeout_s=args.timeout or max(60.0, 2 * args.interval),
        history=history,
        flaky_rule=args.flaky,
        masker=masker,
    )
    try:
        server = ServeServer(
            (args.host, args.port),
            runs,
            env=args.env,
            stacks=[stack.name for stack in selection.stacks],
            token=token,
            masker=masker,
        )
    except OSError as exc:
        runs.stop()  # never started: this removes its working directory
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return serve_until_stopped(server, f"deployproof serve: {args.env} on {args.host}")


def _unwritable(history: History) -> str | None:
    """Why serve cannot keep its runs (the state directory cannot be created or written), or
    ``None``: found before serving, as a usage error, not as a traceback from the first run."""
    import sqlite3  # noqa: PLC0415

    try:
        history.next_id()  # creates the state directory and the database
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (
            f"cannot keep serve's runs in {history.path}: {reason}: set state_dir in the "
            f"inventory to a directory serve can create and write"
        )
    return None


def trend_command(args: argparse.Namespace) -> int:
    """Print each check's record for one stack; 1 when no run of it is recorded."""
    import json  # noqa: PLC0415

    from ...inventory.load import InventoryError, load_environment  # noqa: PLC0415
    from ...report.run_history import History  # noqa: PLC0415

    try:
        inventory = load_environment(Path(args.inventory), args.env)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.stack not in inventory.stacks:
        known = ", ".join(sorted(inventory.stacks)) or "(none)"
        print(f"error: no stack {args.stack!r} in {args.env}: known are {known}", file=sys.stderr)
        return 2
    path = inventory.state.serve_runs
    trends = (
        History(path).trend(args.env, args.stack, args.runs, args.flaky) if path.exists() else []
    )
    if args.json:
        json.dump([trend.as_json() for trend in trends], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for trend in trends:
            p50 = "-" if trend.p50_s is None else f"{trend.p50_s:.3f}s"
            p95 = "-" if trend.p95_s is None else f"{trend.p95_s:.3f}s"
            flaky = " FLAKY" if trend.flaky.flaky else ""
            print(
                f"{trend.kind:<8} {trend.name:<40} pass {trend.pass_rate:6.1%} of {trend.runs:<4} "
                f"p50 {p50:>8} p95 {p95:>8} flaky {trend.flaky.score:.2f}{flaky}"
            )
    if not trends:
        print(f"no serve runs of {args.stack} recorded in {path}", file=sys.stderr)
        return 1
    return 0
