"""An example E2E suite to copy: a user journey against one stack, then a look in its database.

Run it with ``pytest --env local --suite example`` (or comment ``/e2e example`` on a pull
request). Each test runs once per selected stack; the fixtures do the plumbing:

* ``stack_http``: an httpx client whose base URL is the stack's;
* ``stack_db``: a connection to the stack's PostgreSQL database as the stack's own user;
* ``deployment``: the version ``--deploy`` just put in place (``None`` otherwise).

Replace the paths and the SQL with your application's: log in, place an order, read it back.
"""

import uuid

import pytest


def test_the_home_page_answers(stack, stack_http):
    response = stack_http.get("/")
    assert response.status_code == 200, f"{stack.name}: GET / answered {response.status_code}"


def test_the_deployed_version_is_the_one_serving(stack, stack_http, deployment):
    if deployment is None:
        pytest.skip("not deploying: nothing to compare with")
    status = stack_http.get("/cgi-bin/status")
    if status.status_code == 404:
        pytest.skip(f"{stack.name} has no /cgi-bin/status")
    assert status.json()["version"] == deployment.version


def test_an_order_is_stored_and_read_back(stack, stack_db):
    order = f"order-{uuid.uuid4().hex[:8]}"
    stack_db.execute("CREATE TABLE IF NOT EXISTS e2e_orders (id text PRIMARY KEY, item text)")
    try:
        stack_db.execute("INSERT INTO e2e_orders VALUES (%s, %s)", (order, "tea"))
        row = stack_db.execute("SELECT item FROM e2e_orders WHERE id = %s", (order,)).fetchone()
        assert row == ("tea",)
    finally:
        stack_db.execute("DELETE FROM e2e_orders WHERE id = %s", (order,))
