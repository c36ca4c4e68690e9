"""The exceptions that carry a verdict (BYD-1).

A check that runs and finds the deployment wrong is a *failure*: roll back.
A check that could not look (host unreachable, daemon down) is
*inconclusive*: it is raised while a fixture observes, so pytest reports it as
an error, and nothing may be promoted or reported green on its strength.
"""

from __future__ import annotations

__all__ = ["Inconclusive"]


class Inconclusive(Exception):
    """Nothing could be observed; the verdict is neither pass nor fail."""
