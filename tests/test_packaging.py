"""The package carries what it reads at run time, and installs with only what it needs.

* ``recorder/_resources/`` holds one relative symlink per schema and SQL file of the
  repository's ``schemas/`` and ``queries/`` (the one source of truth), so a wheel carries
  their content; the two sets must stay equal (a new SQL file without its link would be
  missing from every install).
* Code reads those files through :mod:`recorder.resources` (``importlib.resources``), never
  through a path relative to the source tree.
* ``make run`` installs the runtime dependencies only; ``make test`` adds the test extra; both
  with the locked versions.
* Every third-party module the package imports is a runtime dependency.

The end-to-end check (wheel built, installed in a clean environment outside the checkout,
``recorder demo/verify/book/query/audit`` run from it) is ``ops/wheel-check.sh`` (CI).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from recorder import resources
from recorder.archive.schema import default_schema_dir, load_schemas
from recorder.audit.load import QUERY_DIR
from recorder.query.api import queries_dir

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "recorder"
LINKS = PACKAGE / "_resources"
#: What the package reads at run time, per top-level folder: (folder, file patterns).
SHIPPED = {"schemas": ("*.toml",), "queries": ("*.sql", "*/*.sql")}


def _top_level_files() -> set[Path]:
    """Repository-relative paths of every file the package must ship."""
    out: set[Path] = set()
    for folder, patterns in SHIPPED.items():
        for pattern in patterns:
            out.update(p.relative_to(REPO) for p in (REPO / folder).glob(pattern) if p.is_file())
    return out


def _packaged_entries() -> set[Path]:
    """Repository-relative paths the links under ``recorder/_resources`` stand for."""
    return {p.relative_to(LINKS) for p in LINKS.rglob("*") if p.is_symlink() or p.is_file()}


def _ln(rel: Path) -> str:
    link = LINKS / rel
    target = os.path.relpath(REPO / rel, link.parent)
    return f"ln -s {target} {link.relative_to(REPO)}"


def test_every_schema_and_sql_file_is_packaged_as_a_relative_symlink() -> None:
    want, have = _top_level_files(), _packaged_entries()
    assert want, "no schema or SQL files found at the top of the repository"
    missing = sorted(want - have)
    assert not missing, ("files the package would not ship; run from the repository root:\n  "
                         + "\n  ".join(_ln(rel) for rel in missing))
    extra = sorted(have - want)
    assert not extra, ("links under recorder/_resources without a file at the top; run:\n  "
                       + "\n  ".join(f"rm {(LINKS / rel).relative_to(REPO)}" for rel in extra))
    for rel in sorted(want):
        link = LINKS / rel
        # per-file and relative: wheels (setuptools, maturin) copy a file link's content;
        # maturin does not follow directory links, and an absolute link breaks in any other tree
        assert link.is_symlink(), f"{link.relative_to(REPO)} must be a symlink; run: rm it, then {_ln(rel)}"
        target = os.readlink(link)
        assert not os.path.isabs(target) and link.resolve() == (REPO / rel).resolve(), (
            f"{link.relative_to(REPO)} -> {target} must point at {rel}; run: "
            f"rm {link.relative_to(REPO)} && {_ln(rel)}")
    for parent in {(LINKS / rel).parent for rel in want}:
        for d in (parent, *parent.relative_to(LINKS).parents):
            assert not (LINKS / d).is_symlink(), f"{LINKS / d}: directory symlinks are not shipped"


def test_the_package_is_marked_typed() -> None:
    """PEP 561: ``recorder/py.typed`` is a tracked file of the package (maturin ships every
    file of ``recorder/``; ``ops/wheel-check.sh`` finds it in the installed wheel)."""
    marker = PACKAGE / "py.typed"
    assert marker.is_file() and not marker.is_symlink()
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "recorder/py.typed"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert tracked.returncode == 0, "recorder/py.typed is not committed"
    assert "py.typed" in (REPO / "ops" / "wheel-check.sh").read_text()


def test_runtime_files_are_found_inside_the_package() -> None:
    inside = [default_schema_dir(), queries_dir(), QUERY_DIR, resources.queries_dir("api")]
    for where in inside:
        assert where.is_relative_to(PACKAGE / "_resources"), where
        assert where.is_dir(), where
    assert set(load_schemas()) == {p.stem for p in (REPO / "schemas").glob("*.toml")}


def test_no_runtime_code_reads_a_path_relative_to_the_source_tree() -> None:
    """``Path(__file__)...parents[2] / "queries"`` breaks once installed: code outside
    ``recorder/testing.py`` (the shared test fixtures' default) goes through
    :mod:`recorder.resources`."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "testing.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        for m in re.finditer(r"__file__[^\n]*(parents?\b|\.\.)", text):
            offenders.append(f"{path.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not offenders, offenders


def test_overrides_still_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    shutil.copy(REPO / "schemas" / "trades.toml", schemas / "trades.toml")
    assert set(load_schemas(schemas)) == {"trades"}
    monkeypatch.setenv("KRAKEN_RECORDER_QUERIES", str(tmp_path))
    assert queries_dir() == tmp_path


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_third_party_module_is_a_runtime_dependency() -> None:
    from importlib.metadata import packages_distributions

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in project["dependencies"]}
    dists = packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules()):
        if module in sys.stdlib_module_names or module in ("recorder", "__future__"):
            continue
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not owners & declared:
            missing.append(f"{module} (from {', '.join(sorted(owners))})")
    assert not missing, f"imported by the package but not in [project] dependencies: {missing}"


def _make_dry_run(target: str, tmp_path: Path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "fresh-venv"  # does not exist: make shows the install recipe
    out = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout


def _pip_installs(recipe: str) -> list[str]:
    return [ln for ln in recipe.splitlines() if re.search(r"-m pip install\b", ln)
            and not re.search(r"install (--quiet )?(-c \S+ )?pip$", ln.strip())]


def test_make_run_installs_only_the_runtime_dependencies(tmp_path: Path) -> None:
    installs = _pip_installs(_make_dry_run("run", tmp_path))
    assert len(installs) == 1, installs
    assert re.search(r"-c constraints\.txt\b", installs[0]) and re.search(r"-e \.$", installs[0]), (
        installs[0])


def test_make_test_installs_the_test_extra_with_the_lock(tmp_path: Path) -> None:
    installs = _pip_installs(_make_dry_run("test", tmp_path))
    assert installs and all("-c constraints.txt" in ln for ln in installs), installs
    assert any("'.[test]'" in ln or ".[test]" in ln for ln in installs), installs


def test_ci_runs_the_wheel_check_after_the_tests() -> None:
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert "make test" in lines and "make wheel-check" in lines, lines
    assert lines.index("make test") < lines.index("make wheel-check")
