"""``secrets_prefix`` (INV-1): an environment's secrets from the process environment.

A CI job holds each environment's secrets as variables of its own (``STAGING_DB_PASSWORD``,
``PROD_DB_PASSWORD``) rather than in the env file on the host. With ``secrets_prefix``
the checks read a database password the env file lacks from ``<prefix><password_key>``,
on a real PostgreSQL server that checks it; a variable without the prefix is never read
(a runner's other environments' secrets stay out of this one), and every prefixed value
is masked in everything the run prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import Postgres, app_database
from tests.support.repo import SUITES

MASK = "********"

QUOTING_CHECK = """
import os

def test_quotes_a_secret(stack):
    assert False, "the runner holds " + os.environ["QA_API_TOKEN"]
"""


def _inventory(pytester: pytest.Pytester, postgres: Postgres, name: str) -> None:
    run_dir = pytester.path / "app"
    run_dir.mkdir()
    (run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\n")  # no password here
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "qa.yml").write_text(
        "secrets_prefix: QA_\n"
        "hosts: {here: {spec: 'local://'}}\n"
        "layers: {platform: {order: 2, engine: compose}}\n"
        "stacks:\n"
        f"  app:\n    layer: platform\n    host: here\n    run_dir: {run_dir}\n"
        "    image_tag_var: APP_IMAGE_TAG\n    services: {web: {}}\n"
        f"    databases: {{main: {{host: 127.0.0.1, port: {postgres.port}, dbname: {name}, "
        f"user: {name}, password_key: DB_PASSWORD}}}}\n"
    )
    pytester.makepyfile(test_health=SUITES["test_health"], test_quoting=QUOTING_CHECK)


def test_a_prefixed_variable_is_the_password_and_is_masked(
    pytester: pytest.Pytester, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, password = app_database(postgres)
    _inventory(pytester, postgres, name)
    monkeypatch.setenv("QA_DB_PASSWORD", password)
    monkeypatch.setenv("QA_API_TOKEN", "token-of-the-qa-runner")

    result = pytester.runpytest_subprocess(
        "--env", "qa", "-p", "no:cacheprovider", "-rA", "-k", "database or quotes"
    )
    output = result.stdout.str() + result.stderr.str()

    result.assert_outcomes(passed=1, failed=1)
    assert "PASSED test_health.py::test_database_answers[qa/platform/app/main]" in output
    assert f"the runner holds {MASK}" in output
    assert "token-of-the-qa-runner" not in output
    assert password not in output


def test_a_variable_without_the_prefix_is_never_read(
    pytester: pytest.Pytester, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, password = app_database(postgres)
    _inventory(pytester, postgres, name)
    monkeypatch.delenv("QA_DB_PASSWORD", raising=False)
    monkeypatch.setenv("DB_PASSWORD", password)  # another environment's, or nobody's
    monkeypatch.setenv("QA_API_TOKEN", "token-of-the-qa-runner")

    result = pytester.runpytest_subprocess(
        "--env", "qa", "-p", "no:cacheprovider", "-rA", "-k", "database"
    )
    output = result.stdout.str() + result.stderr.str()

    result.assert_outcomes(failed=1)
    assert "FAILED test_health.py::test_database_answers[qa/platform/app/main]" in output
    assert f"postgresql {name}@127.0.0.1:{postgres.port}/{name}" in output
    assert password not in output
    assert Path(pytester.path / "app" / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
