"""Seed 003 §4: one database and one user per service, and no user reaches another's database."""

from pytest_deployproof.checks import e2e


def test_database_isolated(stack, database, deployproof_run):
    e2e.expect_isolated(deployproof_run, stack, database)
