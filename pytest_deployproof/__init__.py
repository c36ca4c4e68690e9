"""pytest-deployproof: prove a deployment is sound with ordinary pytest tests."""

# The one place the version is written: pyproject.toml reads it from here
# ([tool.setuptools.dynamic]), and CHANGELOG.md names it.
__version__ = "0.1.0"

__all__ = ["__version__"]
