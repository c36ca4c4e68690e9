"""E2E-2: one database and one user per service, and no user reaches another's database."""

from pytest_deployproof.checks import e2e


def test_database_isolated(stack, database, database_isolation):
    e2e.expect_isolated(stack, database, database_isolation)
