#!/usr/bin/env bash
# A third-party plugin in this checkout, as its author and its users meet it:
#
#   tools/ci/plugin-install-check.sh     (a step of .ci/run; `uv add` needs PyPI to lock)
#
# 1. Standalone: docs/examples/flops-fit-example is its own project; it resolves flops-fit-core
#    by path, without the workspace, and its contract tests pass in its own environment.
# 2. Installed with `flops-fit install -e` into this checkout's environment, it survives
#    `uv sync --locked` (the install is recorded in the project's `plugins` group), is listed
#    by `flops-fit plugins`, trains a mock-law study through its external command, and its
#    contract tests pass in the workspace environment. `flops-fit uninstall` removes it.
# pyproject.toml and uv.lock are put back as they were, and the environment synced, on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
EXAMPLE="$ROOT/docs/examples/flops-fit-example"
WORK="$(mktemp -d)"
cd "$ROOT"
cp pyproject.toml uv.lock "$WORK/"
restore() {
  cp "$WORK/pyproject.toml" "$WORK/uv.lock" "$ROOT/"
  (cd "$ROOT" && uv sync --locked --quiet) || true
  rm -rf "$WORK" "$EXAMPLE/.venv"
}
trap restore EXIT
say() { printf '\n== %s\n' "$*"; }
fail() { echo "plugin-install-check FAILED: $*" >&2; exit 1; }

say "the example plugin on its own: flops-fit-core by path, its own environment"
(cd "$EXAMPLE" && uv sync --quiet && uv run --no-sync pytest -q)

say "flops-fit install -e into this checkout"
uv run --locked flops-fit install -e "$EXAMPLE"
grep -q 'flops-fit-example' pyproject.toml || fail "the install is not recorded in pyproject.toml"
uv sync --locked
uv run --locked flops-fit plugins | tee "$WORK/plugins.txt"
grep -q '^trainer *command ' "$WORK/plugins.txt" || fail "uv sync --locked removed the plugin"
grep -q '^plotter *tokens-per-param ' "$WORK/plugins.txt" || fail "the example's plotter is missing"

say "a study trained through the example's external command"
uv run --locked flops-fit -q run --preset mock --trainer command --out "$WORK/study" \
  --set 'plot.names=["tokens-per-param"]'
[ -s "$WORK/study/fit.json" ] && [ -s "$WORK/study/figures/tokens-per-param.png" ] \
  || fail "the study through the example trainer wrote no fit or figure"

say "the example's contract tests in the workspace environment"
uv run --locked pytest -p no:xdist -p no:cacheprovider -q -c "$EXAMPLE/pyproject.toml" \
  --rootdir "$EXAMPLE" "$EXAMPLE/tests"

say "flops-fit uninstall"
uv run --locked flops-fit uninstall flops-fit-example
uv sync --locked
if uv run --locked flops-fit plugins | grep -q '^trainer *command '; then
  fail "flops-fit uninstall left the plugin"
fi
echo "plugin-install-check OK"
