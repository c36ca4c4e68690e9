"""Where a project keeps its E2E suites: the ini key ``deployproof_e2e_dir``, relative to
the rootdir (default ``suites/e2e``).

pytest reads the key through its Config; the comment hook runs in the repository root
without one, so :func:`repository_e2e_folder` reads the same key from the file pytest
would take there. Both go through :func:`folder_in`: the repository's files come from
pull requests, and a folder leading out of it (absolute, ``..``, a symlink) would let a
branch make the hook offer, or a run collect, what lies outside the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_E2E_DIR",
    "E2E_DIR_KEY",
    "E2EFolderError",
    "folder_in",
    "repository_e2e_folder",
]

E2E_DIR_KEY = "deployproof_e2e_dir"
DEFAULT_E2E_DIR = "suites/e2e"

Section = Mapping[str, object]


class E2EFolderError(ValueError):
    """``deployproof_e2e_dir`` names no folder we may use; the message says what to fix."""


def folder_in(root: Path, value: str, where: str) -> Path:
    """``value`` as a folder under ``root``. Refused when it leads out of ``root`` or is
    ``root`` itself (every test there would be some E2E suite's)."""
    text = value.strip() or DEFAULT_E2E_DIR
    named = f"{E2E_DIR_KEY} = {value!r} ({where})"
    fix = f"name a folder inside it, relative to it, e.g. {DEFAULT_E2E_DIR}"
    if Path(text).is_absolute():
        raise E2EFolderError(f"{named} is absolute: the E2E folder is in the rootdir {root}; {fix}")
    folder = root / os.path.normpath(text)
    real_root, real = root.resolve(), folder.resolve()
    if real == real_root:
        raise E2EFolderError(f"{named} is the rootdir {root} itself; {fix}")
    if not real.is_relative_to(real_root):
        raise E2EFolderError(f"{named} leads to {real}, outside the rootdir {root}; {fix}")
    return folder


def repository_e2e_folder(root: Path) -> Path:
    """The E2E folder of the repository checked out at ``root``, as a pytest run from
    ``root`` would see it."""
    value, where = _configured(root)
    return folder_in(root, value, where)


def _configured(root: Path) -> tuple[str, str]:
    """The key's value and the file holding it: from the first file that pytest takes as
    its configuration in ``root`` (its precedence, _pytest/config/findpaths.py)."""
    for name, read in _CONFIG_FILES.items():
        path = root / name
        if not path.is_file():
            continue
        if not path.resolve().is_relative_to(root.resolve()):
            raise E2EFolderError(f"{name} is a symlink out of the repository {root}: not read")
        section = read(path)
        if section is None:
            continue
        value = section.get(E2E_DIR_KEY, DEFAULT_E2E_DIR)
        if not isinstance(value, str):
            raise E2EFolderError(f"{E2E_DIR_KEY} in {name} must be a string, not {value!r}")
        return value, f"in {name}"
    return DEFAULT_E2E_DIR, "default"


def _ini_section(section: str, *, always: bool) -> Callable[[Path], Section | None]:
    """A reader of ``[section]``; with ``always``, the file is pytest's configuration even
    without that section (pytest.ini)."""

    def read(path: Path) -> Section | None:
        import iniconfig  # noqa: PLC0415 - the hook's path only

        try:
            parsed = iniconfig.IniConfig(str(path))
        except (iniconfig.ParseError, OSError, UnicodeDecodeError) as exc:
            raise E2EFolderError(f"cannot read {path.name}: {exc}") from None
        if section in parsed:
            return dict(parsed[section].items())
        return {} if always else None

    return read


def _toml(path: Path) -> dict[str, Any]:
    import tomllib  # noqa: PLC0415 - the hook's path only

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise E2EFolderError(f"cannot read {path.name}: {exc}") from None


def _pytest_toml(path: Path) -> Section | None:
    """pytest.toml: its ``[pytest]`` table, the configuration even when absent."""
    table = _toml(path).get("pytest")
    return table if isinstance(table, dict) else {}


def _pyproject_toml(path: Path) -> Section | None:
    """pyproject.toml: ``[tool.pytest]`` (native TOML) or ``[tool.pytest.ini_options]``
    (strings, as in an ini file); neither: not pytest's configuration."""
    tool = _toml(path).get("tool")
    table = tool.get("pytest") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        return None
    native = {key: value for key, value in table.items() if key != "ini_options"}
    ini = table.get("ini_options")
    if native and ini is not None:
        raise E2EFolderError(
            f"{path.name}: both [tool.pytest] and [tool.pytest.ini_options]: pytest refuses "
            "that; keep one"
        )
    if native:
        return native
    if not isinstance(ini, dict):
        return None
    return {key: value if isinstance(value, list) else str(value) for key, value in ini.items()}


_CONFIG_FILES: dict[str, Callable[[Path], Section | None]] = {
    "pytest.toml": _pytest_toml,
    ".pytest.toml": _pytest_toml,
    "pytest.ini": _ini_section("pytest", always=True),
    ".pytest.ini": _ini_section("pytest", always=True),
    "pyproject.toml": _pyproject_toml,
    "tox.ini": _ini_section("pytest", always=False),
    "setup.cfg": _ini_section("tool:pytest", always=False),
}
