"""Support code for the project's own tests, one concern a module.

Modules with fixtures are loaded as plugins by ``tests/conftest.py``
(``pytest_plugins``); the tests import helpers and classes from them directly.
"""
