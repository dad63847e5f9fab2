"""Where the files the package reads at run time live: dataset schemas and SQL.

The one source of truth stays at the top of the repository (``schemas/*.toml``,
``queries/**/*.sql``). The package ships them through per-file relative symlinks under
``recorder/_resources/`` (``recorder/_resources/schemas/book.toml ->
../../../schemas/book.toml``); building a wheel copies each link's content, so an installed
package carries the files themselves and never looks at a source tree. Code finds them here,
through :func:`importlib.resources.files`, and nowhere else.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from recorder.errors import RecorderError

__all__ = ["RESOURCE_KINDS", "ResourceError", "resource_dir", "schema_dir", "queries_dir"]

#: Top-level folders of the repository that the package ships (``recorder/_resources/<kind>``).
RESOURCE_KINDS: Final = ("schemas", "queries")


class ResourceError(RecorderError, RuntimeError):
    """The package's data files cannot be reached as files (e.g. imported from a zip)."""


def resource_dir(kind: str, *parts: str) -> Path:
    """``recorder/_resources/<kind>/<parts...>`` of the installed (or checked-out) package."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"unknown resource kind {kind!r} (known: {', '.join(RESOURCE_KINDS)})")
    where = files("recorder").joinpath("_resources", kind, *parts)
    if not isinstance(where, Path):
        raise ResourceError(f"recorder's data files ({kind}) are not on a file system "
                            f"({where!r}): install the package as files, not as a zip")
    return where


def schema_dir() -> Path:
    """The packaged dataset schemas (``schemas/*.toml``)."""
    return resource_dir("schemas")


def queries_dir(*parts: str) -> Path:
    """The packaged SQL (``queries/*.sql``, ``queries/api``, ``queries/audit``)."""
    return resource_dir("queries", *parts)
