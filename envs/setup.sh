#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from the pinned requirements.
# Idempotent: does nothing when .venv already matches envs/requirements*.txt.
# Offline-safe: needs only the package registries; nothing else is downloaded, now or at run time.
# --test: also the test-only packages (envs/requirements-test.txt), as README command 2 asks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=".venv"
STAMP="$VENV/.ccgrade-requirements.sha256"
TEST_STAMP="$VENV/.ccgrade-test-requirements.sha256"
want="$(cat envs/requirements.txt envs/requirements-radiomics.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
want_test="$(cat envs/requirements-test.txt | sha256sum | cut -d' ' -f1)"
test_ok() { [[ "${1:-}" != "--test" || ( -f "$TEST_STAMP" && "$(cat "$TEST_STAMP")" == "$want_test" ) ]]; }
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && test_ok "${1:-}"; then
  exit 0
fi
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then  # only the test packages are missing
  "$VENV/bin/python" -m pip install --quiet -r envs/requirements-test.txt
  echo "$want_test" > "$TEST_STAMP"
  exit 0
fi
echo "[setup] building $VENV (one-off; a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r envs/requirements.txt
# pyradiomics ships no wheel: build it against the numpy installed above.
"$VENV/bin/python" -m pip install --quiet --no-build-isolation -r envs/requirements-radiomics.txt
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
if [[ "${1:-}" == "--test" ]]; then
  "$VENV/bin/python" -m pip install --quiet -r envs/requirements-test.txt
  echo "$want_test" > "$TEST_STAMP"
fi
echo "[setup] done: $("$VENV/bin/python" -c 'import ccgrade, torch, snakemake, radiomics; print("ccgrade", ccgrade.__version__, "torch", torch.__version__, "snakemake", snakemake.__version__, "pyradiomics", radiomics.__version__)')" >&2
