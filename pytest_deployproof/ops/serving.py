"""How every deployproof server runs: until Ctrl-C or SIGTERM, then closed after the work
it accepted (the webhook's event, the runner's apply, serve's check run).

One place, so the three servers stop the same way and a fix to stopping reaches all.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve_until_stopped"]


def serve_until_stopped(server: Any, label: str) -> int:
    """Serve until Ctrl-C or SIGTERM (what systemd and docker stop send), then close:
    closing waits for the work already accepted (an apply, an event) to end, and another
    signal meanwhile does not cut that wait short."""
    from ..deploy.signals import deferred, restore_terminate, terminate_as_interrupt  # noqa: PLC0415

    print(f"{label}:{server.server_address[1]}", flush=True)
    terminate_as_interrupt()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        with deferred("closing the server after the work it accepted"):
            server.server_close()
        restore_terminate()
    return 0
