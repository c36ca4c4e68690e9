"""Health assertions (SMK-3, SMK-4): health endpoints within budget, databases answering."""

from __future__ import annotations

import pytest

from ..inventory.model import Stack
from ..observe.databases import DatabaseResult

__all__ = ["expect_database_answers"]


def expect_database_answers(stack: Stack, result: DatabaseResult) -> None:
    """The stack's own user could connect (and run a query, or PING)."""
    __tracebackhide__ = True
    if not result.ok:
        pytest.fail(f"stack {stack.name}: {result.describe()}", pytrace=False)
