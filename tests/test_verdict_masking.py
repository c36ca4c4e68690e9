"""Verdicts are values on the report, and the report is masked once, outermost.

An INCONCLUSIVE or DEPLOY FAILED message is written by the run's hooks from the
exception; a secret inside it (a host's error echoing a DSN, a deploy error quoting
the env file) must come out masked in every output: terminal, JUnit, Allure, the
dashboard. The verdict itself must reach the reports without any text to parse.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

SECRET = "planted-verdict-S3cret-71ad"

INVENTORY = """\
hosts:
  here: {spec: "local://"}
layers:
  platform: {order: 2, engine: compose}
stacks:
  app:
    layer: platform
    host: here
    run_dir: stacks/app
    services:
      web: {image: example/app}
"""

TESTS = f"""
from pytest_deployproof.deploy.stack_action import DeployError
from pytest_deployproof.errors import Inconclusive
import pytest


@pytest.fixture
def unreachable(stack):
    raise Inconclusive("host said: password {SECRET} refused")


@pytest.fixture
def refused(stack):
    raise DeployError("deploy refused: DB_PASSWORD={SECRET}")


@pytest.mark.smoke
def test_inconclusive(stack, unreachable):
    pass


@pytest.mark.smoke
def test_deploy_failed(stack, refused):
    pass


@pytest.mark.smoke
def test_failed(stack):
    assert "{SECRET}" == "", "leaked {SECRET}"
"""


def test_inconclusive_and_deploy_errors_carry_their_verdict_and_come_out_masked(
    pytester: pytest.Pytester,
) -> None:
    stack_dir = pytester.path / "inventories" / "stacks" / "app"
    stack_dir.mkdir(parents=True)
    (stack_dir / ".env").write_text(f"DB_PASSWORD={SECRET}\n")
    (stack_dir / "compose.yaml").write_text("services: {web: {image: example/app}}\n")
    (pytester.path / "inventories" / "test.yml").write_text(INVENTORY)
    pytester.makepyfile(test_verdicts=TESTS)

    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", "-rA",
        "--alluredir", "allure", "--junitxml", "junit.xml", "--dashboard", "dashboard.md",
    )  # fmt: skip

    result.assert_outcomes(failed=1, errors=2)
    terminal = result.stdout.str() + result.stderr.str()
    assert "INCONCLUSIVE: host said: password ******** refused" in terminal
    assert "DEPLOY FAILED: deploy refused: DB_PASSWORD=********" in terminal
    outputs = {"terminal": terminal}
    outputs |= {
        str(p): p.read_text(errors="replace")
        for p in [pytester.path / "junit.xml", pytester.path / "dashboard.md"]
    }
    outputs |= {str(p): p.read_text(errors="replace") for p in (pytester.path / "allure").iterdir()}
    assert len(outputs) > 5
    assert [name for name, text in outputs.items() if SECRET in text] == []

    # The verdict travels as a value: JUnit properties and the dashboard's counts.
    verdicts = {
        case.get("name"): [
            p.get("value") for p in case.iter("property") if p.get("name") == "deployproof_verdict"
        ]
        for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    }
    assert verdicts == {
        "test_inconclusive[test/platform/app]": ["inconclusive"],
        "test_deploy_failed[test/platform/app]": ["deploy failed"],
        "test_failed[test/platform/app]": ["failed"],
    }
    dashboard = (pytester.path / "dashboard.md").read_text()
    assert "1 deploy failed, 1 failed, 1 inconclusive" in dashboard
    categories = json.loads((pytester.path / "allure" / "categories.json").read_text())
    assert [c["name"] for c in categories][:2] == [
        "Infrastructure unreachable (inconclusive)",
        "Deployment failed",
    ]
