#!/usr/bin/env bash
# Try the newest versions of every dependency (ignoring constraints.txt) in a throwaway
# virtual environment, report which versions differ from the lock, and run the test suite
# on them. Exit 0 when the suite passes on the newest versions, 1 when something breaks.
# Upgrading the lock is then a deliberate commit: `pip freeze` from that environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=$(mktemp -d /tmp/recorder-upgrade-check.XXXXXX)
trap 'rm -rf "$VENV"' EXIT
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --upgrade '.[test]'
echo "== versions that differ from constraints.txt (locked -> newest)"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, re
locked = {}
for line in open("constraints.txt"):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
    if m:
        locked[m.group(1).lower().replace("_", "-")] = m.group(2)
changed = 0
for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"].lower().replace("_", "-")
    if name in locked and locked[name] != dist.version:
        print(f"  {name}: {locked[name]} -> {dist.version}")
        changed += 1
print(f"  ({changed} changed)")
PY
echo "== test suite on the newest versions"
cd "$VENV" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/tests" "$@" \
  && echo "upgrade-check: the suite passes on the newest versions" \
  || { echo "upgrade-check: the suite FAILS on the newest versions (see above)"; exit 1; }
