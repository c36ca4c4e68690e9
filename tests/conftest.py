"""The project's own tests: their fixtures come from the plugins in ``tests/support/``.

Integration tests use the real Docker engine (and PostgreSQL, redis-server, a
registry, sshd). When a part is missing they FAIL under CI (``CI=true``) and skip
with the reason elsewhere (``tests/support/need.py``): a green CI must never hide
checks that did not run.
"""

pytest_plugins = [
    "pytester",
    "tests.support.engine",
    "tests.support.compose",
    "tests.support.deploying",  # before postgres, which imports it (assert rewriting)
    "tests.support.postgres",
    "tests.support.redis",
    "tests.support.registry",
    "tests.support.loopback",
    "tests.support.filesystems",
]
