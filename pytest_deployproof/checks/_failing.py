"""How every check fails: one line naming what was judged and which check, then what is wrong.

A failed check is a fact about the deployment, so it fails without the plugin's
traceback (``pytrace=False``); drift lists one ``- `` line per difference and
attaches the same diff to the Allure result.
"""

from __future__ import annotations

import pytest

__all__ = ["fail_if"]


def fail_if(subject: str, check: str, problems: list[str], *, as_diff: bool = False) -> None:
    """Fail the test when ``problems`` is not empty; ``subject`` is e.g. ``stack web``."""
    __tracebackhide__ = True
    if not problems:
        return
    if not as_diff:
        pytest.fail(f"{subject}: {check}: " + "; ".join(problems), pytrace=False)
    import allure  # noqa: PLC0415 - only when there is a diff to attach

    diff = "\n".join(f"- {line}" for line in problems)
    allure.attach(diff, name=f"{check} diff", attachment_type=allure.attachment_type.TEXT)
    pytest.fail(f"{subject}: {check}:\n{diff}", pytrace=False)
