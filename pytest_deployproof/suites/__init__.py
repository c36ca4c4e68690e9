"""The bundled checks: preflight, smoke, health and drift, as pytest test modules.

They ship in the package so that an installed plugin finds them in any repository:
with ``--env`` (and no test path named), :mod:`pytest_deployproof.hooks` adds this
folder to the paths pytest collects, beside the project's own tests. They only judge;
observing is the fixtures' work, so a project's own checks use the same fixtures.
"""
