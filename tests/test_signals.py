"""SIGTERM behaves like Ctrl-C under --deploy; a rollback in progress is not cut short (DEP-2)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pytest_deployproof.deploy.signals import deferred, restore_terminate, terminate_as_interrupt


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs handlers between bytecodes of the main thread


def test_sigterm_raises_keyboard_interrupt_until_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    terminate_as_interrupt()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            deliver(signal.SIGTERM)
    finally:
        restore_terminate()
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_during_a_deferred_block_wait_and_are_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = signal.getsignal(signal.SIGINT)
    with deferred("rolling back web") as received:
        deliver(signal.SIGINT)
        deliver(signal.SIGTERM)
        finished = True  # reached: neither signal interrupted the block
    assert finished
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert "SIGINT received; finishing first: rolling back web" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is handler
