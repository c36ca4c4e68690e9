"""Preflight judgements, masking and host facts on hand-made observations (no I/O to fake:
these functions only judge what the observers read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pytest_deployproof.checks import preflight
from pytest_deployproof.inventory.model import IMAGE_TAG_PATTERN, Host, Stack, Waiver
from pytest_deployproof.observe.stackfiles import StackFiles
from pytest_deployproof.reach.hosts import DiskUsage, HostAccess
from pytest_deployproof.secrets import MASK, Masker, is_secret_key

STACK = Stack.model_validate(
    {
        "name": "web",
        "layer": "platform",
        "host": "here",
        "run_dir": "/srv/stacks/web",
        "services": {"web": {"critical": True}, "worker": {}},
    }
)


def files(services: dict[str, Any], raw: dict[str, Any] | None = None) -> StackFiles:
    config = {"services": services}
    return StackFiles("web", raw or config, {}, config, None, Masker())


def failure(check: Any, *args: Any) -> str:
    with pytest.raises(pytest.fail.Exception) as caught:
        check(*args)
    return str(caught.value)


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("ghcr.io/o/www:sha-d75f3637", None),
        ("ghcr.io/o/www:v1.2.3", None),
        ("ghcr.io/o/www:1.2.3-rc.1", None),
        ("127.0.0.1:5000/www:v1.0.0", None),
        ("ghcr.io/o/www@sha256:" + "a" * 64, None),
        ("ghcr.io/o/www", "uses untagged image ghcr.io/o/www (means latest)"),
        ("127.0.0.1:5000/www", "uses untagged image"),
        ("ghcr.io/o/www:latest", "uses ghcr.io/o/www:latest"),
        ("seisei-www:pin-20260129-d75f3637", "tag 'pin-20260129-d75f3637' is not a registry tag"),
        ("", "names no image"),
    ],
)
def test_critical_images_must_be_registry_tags(image: str, problem: str | None) -> None:
    observed = files({"web": {"image": image}, "worker": {"image": "busybox:latest"}})
    if problem is None:
        preflight.expect_images_pinned(STACK, observed, IMAGE_TAG_PATTERN)  # worker: not critical
    else:
        assert problem in failure(
            preflight.expect_images_pinned, STACK, observed, IMAGE_TAG_PATTERN
        )


def test_limits_accept_both_compose_spellings() -> None:
    preflight.expect_limits_declared(
        STACK,
        files(
            {
                "web": {"deploy": {"resources": {"limits": {"cpus": 0.5, "memory": "1G"}}}},
                "worker": {"cpus": 0.1, "mem_limit": "64m"},
            }
        ),
    )
    message = failure(
        preflight.expect_limits_declared, STACK, files({"web": {"cpus": 1}, "worker": {}})
    )
    assert "service web has no memory limit; service worker has no cpus or memory limit" in message


@pytest.mark.parametrize(
    "environment",
    [
        {"DB_PASSWORD": "hunter22"},
        ["DB_PASSWORD=hunter22"],
    ],
)
def test_literal_secrets_are_found_in_either_environment_form(environment: Any) -> None:
    raw = {"services": {"web": {"environment": environment}}}
    message = failure(preflight.expect_no_literal_secrets, STACK, files({}, raw))
    assert "service web sets DB_PASSWORD to a literal value" in message
    assert "hunter22" not in message


@pytest.mark.parametrize(
    "environment",
    [
        {"DB_PASSWORD": "${DB_PASSWORD}", "API_TOKEN": "$TOKEN", "LOG_LEVEL": "debug"},
        ["DB_PASSWORD", "SECRET_KEY="],
    ],
)
def test_interpolated_or_passed_through_secrets_are_fine(environment: Any) -> None:
    raw = {"services": {"web": {"environment": environment}}}
    preflight.expect_no_literal_secrets(STACK, files({}, raw))


def test_env_file_missing_and_incomplete() -> None:
    stack = STACK.model_copy(update={"required_env": ("SMTP_HOST",), "image_tag_var": "TAG"})
    absent = StackFiles("web", None, None, None, None, Masker())
    assert "/srv/stacks/web/.env does not exist on host here" in failure(
        preflight.expect_env_complete, stack, absent
    )
    partial = StackFiles("web", None, {"TAG": "v1", "SMTP_HOST": ""}, None, None, Masker())
    assert "does not set SMTP_HOST" in failure(preflight.expect_env_complete, stack, partial)


def test_disk_gate() -> None:
    host = Host(name="vps1", spec="local://", min_free_percent=20)
    preflight.expect_disk_free(host, DiskUsage("/srv", "/", 1000 * 1024, 300 * 1024))
    message = failure(
        preflight.expect_disk_free, host, DiskUsage("/srv", "/", 1000 * 1024, 150 * 1024)
    )
    assert message == ("host vps1: /srv (on /) has 15.0% free (150 MiB), below the 20% threshold")


def test_disk_usage_is_read_with_df_on_the_host(tmp_path: Path) -> None:
    usage = HostAccess(Host(name="here", spec="local://")).disk_usage(str(tmp_path))
    assert usage.size_kib > 0
    assert 0 <= usage.free_percent <= 100


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("DB_PASSWORD", True),
        ("API_TOKEN", True),
        ("SECRET_KEY_BASE", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("KEY", True),
        ("DATABASE_DSN", True),
        ("WEB_IMAGE_TAG", False),
        ("LOG_LEVEL", False),
        ("MONKEY_COUNT", False),
        ("SMTP_PASS", True),
        ("PGPASS", True),
        ("DB_PWD", True),
        ("BASIC_AUTH", True),
        ("SESSION_COOKIE", True),
        ("BYPASS_CACHE", False),
        ("AUTHOR_NAME", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:pw-123@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("postgres://app:p@ss@db:5432/app", f"postgres://app:{MASK}@db:5432/app"),
        ("amqp://u:a@b@c@mq/vhost", f"amqp://u:{MASK}@mq/vhost"),
        ("http://host:8080/path@x", "http://host:8080/path@x"),  # a port, not a password
    ],
)
def test_url_passwords_are_masked_whole(text: str, masked: str) -> None:
    assert Masker()(text) == masked


def test_masker_masks_values_and_url_passwords() -> None:
    mask = Masker().with_env({"DB_PASSWORD": "s3cr3t-value", "LOG_LEVEL": "debug", "X_KEY": "ab"})
    text = "login s3cr3t-value failed; dsn postgresql://app:other-pw@db:5432/app; level debug"
    assert mask(text) == (
        f"login {MASK} failed; dsn postgresql://app:{MASK}@db:5432/app; level debug"
    )


def _waived(*waivers: dict[str, Any]) -> Stack:
    return STACK.model_copy(
        update={"waivers": tuple(Waiver.model_validate(waiver) for waiver in waivers)}
    )


NO_LIMITS = {"web": {"image": "x:v1"}, "worker": {"image": "y:v1"}}


def test_a_waived_gate_is_skipped_with_its_reason_and_end_date() -> None:
    stack = _waived({"gate": "limits", "reason": "vendor images", "until": "2099-12-31"})
    with pytest.raises(pytest.skip.Exception) as skipped:
        preflight.expect_limits_declared(stack, files(NO_LIMITS))
    assert str(skipped.value) == (
        "stack web: resource limits: waived: vendor images (until 2099-12-31): "
        "service web has no cpus or memory limit; service worker has no cpus or memory limit"
    )


def test_a_waiver_for_one_service_leaves_the_others_failing() -> None:
    stack = _waived(
        {"gate": "limits", "services": ["worker"], "reason": "vendor image", "until": "2099-12-31"}
    )
    message = failure(preflight.expect_limits_declared, stack, files(NO_LIMITS))
    assert message == "stack web: resource limits: service web has no cpus or memory limit"


def test_an_expired_waiver_fails_with_its_reason_even_when_the_gate_would_pass() -> None:
    stack = _waived({"gate": "pinning", "reason": "moving to sha tags", "until": "2020-01-31"})
    observed = files({"web": {"image": "ghcr.io/o/www:v1.2.3"}})
    message = failure(preflight.expect_images_pinned, stack, observed, IMAGE_TAG_PATTERN)
    assert message == (
        "stack web: image tags: waiver expired on 2020-01-31: moving to sha tags "
        "(renew or remove it)"
    )


def test_a_waiver_of_another_gate_changes_nothing() -> None:
    stack = _waived({"gate": "registry", "reason": "offline mirror", "until": "2099-12-31"})
    message = failure(preflight.expect_limits_declared, stack, files(NO_LIMITS))
    assert message.startswith("stack web: resource limits: service web has no")


@pytest.mark.parametrize(
    ("waiver", "said"),
    [
        ({"gate": "limit", "reason": "r" * 5, "until": "2099-01-01"}, "gate"),
        ({"gate": "limits", "reason": "r" * 5}, "until"),
        ({"gate": "limits", "reason": "r" * 5, "until": "31.12.2099"}, "until"),
        ({"gate": "limits", "reason": "", "until": "2099-01-01"}, "reason"),
    ],
)
def test_a_malformed_waiver_is_an_inventory_error_naming_the_field(
    waiver: dict[str, Any], said: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Waiver.model_validate(waiver)
    assert caught.value.errors()[0]["loc"][0] == said
