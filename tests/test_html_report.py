"""The Allure HTML report, opened in a real headless Chromium (REP-1, REP-3).

A run against a real stack with one failing check and planted secrets; the
report is generated with the Allure command line (npm allure-commandline),
served on 127.0.0.1 and read back from the browser's DOM, as an operator
would see it. The screenshot is kept in reports/screenshots/ for CI.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.need import need
from tests.support.repo import REPO, SUITES
from tests.test_reports_docker import PLANTED

SCREENSHOTS = REPO / "reports" / "screenshots"


def tool(name: str, *candidates: Path) -> str:
    found = shutil.which(name) or next((str(c) for c in candidates if c.exists()), None)
    if found is None:
        need(name, f"{name} is not installed (scripts/setup.sh installs it)")
    assert found is not None
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *args: None  # type: ignore[assignment, method-assign]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def chromium_run(chromium: str, url: str, *extra: str) -> str:
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=10000", "--window-size=1400,1000", *extra, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.stdout


def browse(chromium: str, url: str) -> str:
    """The page's text once its scripts have run (styles and scripts left out)."""
    page = chromium_run(chromium, url, "--dump-dom")
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_report_shows_the_stacks_and_the_failed_check_and_no_secret(
    pytester: pytest.Pytester,
    compose_stack: Callable[..., ComposeStack],
    served: Callable[[Path], str],
) -> None:
    allure = tool("allure", REPO / ".tools" / "allure" / "node_modules" / ".bin" / "allure")
    chromium = tool("chromium")
    env = "APP_IMAGE_TAG=v1.0.0\n" + "".join(f"{k}={v}\n" for k, v in PLANTED.items())
    shop = compose_stack("shop", env_file=env, web={"HEALTH_STATUS": "503"})
    blog = compose_stack("blog", env_file=env, web={"HEALTH_BODY": "${API_TOKEN}"})
    shop.up()
    blog.up()
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(
        inventory_yaml([shop, blog], body="'welcome'")
    )
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    result = pytester.runpytest_subprocess(
        "--env", "test", "-m", "smoke", "-p", "no:cacheprovider", "--alluredir", "results"
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=2)

    report = pytester.path / "report"
    subprocess.run(
        [allure, "generate", str(pytester.path / "results"), "-o", str(report), "--clean"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    base = served(report)

    overview = browse(chromium, f"{base}/index.html")
    assert "stacks blog,shop" in overview  # the environment widget
    assert "Product check failed 2" in overview  # the categories widget
    failed = [
        json.loads(p.read_text())
        for p in (report / "data" / "test-cases").glob("*.json")
        if json.loads(p.read_text())["status"] == "failed"
    ]
    [blog_case] = [case for case in failed if "blog" in case["name"]]
    page = browse(chromium, f"{base}/index.html#testresult/{blog_case['uid']}")
    assert "Failed test_endpoint_answers[test/platform/blog/health]" in page
    assert "body does not contain 'welcome'" in page
    assert "HTTP exchange" in page  # the attachment
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "allure-failed-check.png"
    screenshot.unlink(missing_ok=True)
    chromium_run(chromium, f"{base}/index.html#testresult/{blog_case['uid']}",
                 f"--screenshot={screenshot}")  # fmt: skip
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    leaks = [
        str(path)
        for path in report.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in PLANTED.values())
    ]
    assert leaks == []
