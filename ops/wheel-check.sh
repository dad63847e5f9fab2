#!/usr/bin/env bash
# The package as users install it: build the wheel from a clean copy of the checkout, install
# it with the locked versions into a new virtual environment outside the checkout, and run the
# installed `recorder` from an unrelated directory, end to end: demo (sim -> capture), then
# verify, query, book and audit on the demo's archive. Proves the wheel carries every file the
# package reads at run time and declares every dependency it imports.
#
# Usage: ops/wheel-check.sh [SECONDS]   (capture length of the demo; default 15)
# Env:   PYTHON (default python3), WHEEL_CHECK_KEEP=1 keeps the work directory.
# Exit 0 when every step succeeds; 1 with the failing step's output otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
PYTHON=${PYTHON:-python3}
CAPTURE_S=${1:-15}
LOCK=$SRC/constraints.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/recorder-wheel-check.XXXXXX")
case "$WORK" in "$SRC"/*) echo "wheel-check: work directory $WORK is inside the checkout" >&2; exit 1;; esac
if [ "${WHEEL_CHECK_KEEP:-0}" = 1 ]; then trap 'echo "wheel-check: kept $WORK"' EXIT
else trap 'rm -rf "$WORK"' EXIT; fi

VENV=$WORK/venv
RUN=$WORK/run   # the installed recorder runs here: no source tree anywhere near
mkdir -p "$WORK/src" "$WORK/dist" "$RUN"

# step NAME CMD...: run CMD with its output in $WORK/NAME.log; on failure show it and stop.
step() {
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$WORK/$name.log" 2>&1; then
    echo "wheel-check: $name ok ($((SECONDS - t0)) s)"
  else
    local code=$?
    echo "wheel-check: $name FAILED (exit $code): $*" >&2
    tail -n 60 "$WORK/$name.log" >&2
    exit 1
  fi
}

# what a deployment copies: tracked and new files, never build/, *.egg-info or .venv
copy_source() {
  git -C "$SRC" ls-files -z --cached --others --exclude-standard \
    | (cd "$SRC" && tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
}
# the installed package, not a checkout, and its data files as files (links were copied)
check_install() {
  local pkg
  pkg=$("$VENV/bin/python" -c 'import pathlib, recorder; print(pathlib.Path(recorder.__file__).parent)')
  case "$pkg" in "$VENV"/*) ;; *) echo "recorder imported from $pkg, not from $VENV"; return 1;; esac
  if [ -n "$(find "$pkg/_resources" -type l)" ]; then echo "symlinks installed under $pkg/_resources"; return 1; fi
  # PEP 561: type checkers read the installed package's annotations
  if [ ! -f "$pkg/py.typed" ]; then echo "no py.typed in the installed package $pkg"; return 1; fi
  local want have
  want=$(cd "$SRC" && { ls schemas/*.toml; ls queries/*.sql queries/*/*.sql; } | sort)
  have=$(cd "$pkg/_resources" && find . -type f | sed 's|^\./||' | sort)
  if [ "$want" != "$have" ]; then diff <(echo "$want") <(echo "$have"); return 1; fi
}
# the busiest level3 pair's longest epoch and a time inside it, from the query layer
pick_book() {
  "$VENV/bin/recorder" query --archive "$RUN/archive" --format csv \
    "SELECT symbol, start_ns + (end_ns - start_ns) * 6 // 10 AS at_ns FROM epochs
     WHERE channel = 'level3' AND end_ns IS NOT NULL ORDER BY end_ns - start_ns DESC, symbol
     LIMIT 1" | tail -n 1 >"$WORK/book.args"
  grep -q , "$WORK/book.args"
}
book() {
  local sym at
  IFS=, read -r sym at <"$WORK/book.args"
  "$VENV/bin/recorder" book "$sym" --archive "$RUN/archive" --clock receive --at "$at"
}

step copy-source copy_source
step venv "$PYTHON" -m venv "$VENV"
step pip "$VENV/bin/python" -m pip install --quiet -c "$LOCK" pip
step build-wheel "$VENV/bin/python" -m pip wheel --no-deps --no-cache-dir -c "$LOCK" \
  --build-constraint "$LOCK" -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/*.whl)
step install "$VENV/bin/python" -m pip install --quiet -c "$LOCK" "$WHEEL"
cd "$RUN"
unset PYTHONPATH
step installed-files check_install
step demo "$VENV/bin/recorder" demo --seconds "$CAPTURE_S" --archive "$RUN/archive"
step verify "$VENV/bin/recorder" verify --archive "$RUN/archive"
step query pick_book
step book book
step audit "$VENV/bin/recorder" audit --archive "$RUN/archive" --quiet --html "$RUN/audit.html"
echo "wheel-check: OK: $(basename "$WHEEL") installed outside the checkout runs demo, verify, query, book and audit"
