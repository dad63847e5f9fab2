"""No process-wide mutable state in the recorder package (issue #18 §4).

Memos live in the object that owns them (a book, a pipeline, a feed clock) or are pure
functions of immutable input behind ``functools.lru_cache``; no function rebinds a module
global, so two pipelines (or threads, or a replay next to a live capture) never share state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recorder

PACKAGE = Path(recorder.__file__).resolve().parent


def test_no_function_rebinds_a_module_global() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                rel = path.relative_to(PACKAGE.parent)
                offenders.append(f"{rel}:{node.lineno}: global {', '.join(node.names)}")
    assert offenders == []
