"""pytest-deployproof: prove a deployment is sound with ordinary pytest tests."""

from importlib.metadata import PackageNotFoundError, version

try:  # the version is written once, in pyproject.toml; the installed metadata carries it
    __version__ = version("pytest-deployproof")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
