#!/usr/bin/env bash
# Install flops-fit the way a user does, from its wheels, outside the repository, and use it.
#
#   tools/ci/wheel-check.sh        (a step of .ci/run; needs PyPI for numpy, scipy, pydantic...)
#
# 1. `uv build --all-packages` builds every distribution of the workspace.
# 2. A fresh virtual environment gets `flops-fit` (the meta-distribution: core, planners, mock,
#    fitters, plotters) from the built wheels and its other dependencies from PyPI. From a
#    folder outside the repository: no torch is installed; the presets and the report's template
#    come from inside the wheels (`run --preset mock` writes report.html); `fit` and `predict`
#    on the CS336 table; the default preset, which needs the torch extra, is refused in one line
#    that names it; a third-party plugin (docs/examples/flops-fit-example) installed with
#    `flops-fit install` resolves `flops-fit-core` from the built wheels and passes its
#    contract tests there.
# 3. A second environment gets `flops-fit[all]`: every plugin of the workspace is listed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
say() { printf '\n== %s\n' "$*"; }
fail() { echo "wheel-check FAILED: $*" >&2; exit 1; }

say "build every distribution"
(cd "$ROOT" && uv build --all-packages --quiet -o "$WORK/dist")
ls "$WORK/dist"
# Our wheels by file, so no index is ever asked for a flops-fit-* name.
WHEELS=("$WORK"/dist/*.whl)
[ "${#WHEELS[@]}" -eq 10 ] || fail "expected 10 wheels, built ${#WHEELS[@]}"
META="$(ls "$WORK"/dist/flops_fit-*.whl)"
ours_but() {  # the built wheels, minus those whose distribution name is given
  local skip="$1" w
  for w in "${WHEELS[@]}"; do [[ "$(basename "$w")" =~ ^(${skip})- ]] || echo "$w"; done
}

say "fit-only install: flops-fit from the wheels into a fresh environment"
uv venv --quiet "$WORK/fit"
PY="$WORK/fit/bin/python"
# The meta-distribution with the wheels it names; the plugins of the extras are left out.
mapfile -t BASE < <(ours_but "flops_fit_torch|flops_fit_api|flops_fit_ray|flops_fit_slurm")
uv pip install --quiet --python "$PY" "${BASE[@]}"
"$PY" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "ray", "fastapi", "submitit") if importlib.util.find_spec(m)]
sys.exit(f"the fit-only install pulled in {missing}" if missing else 0)
EOF
echo "no torch, ray, fastapi or submitit in the fit-only install"
FF="$WORK/fit/bin/flops-fit"
mkdir "$WORK/user" && cd "$WORK/user"
cp "$ROOT/tests/data/cs336/isoflops_curves.csv" .
"$FF" plugins
"$FF" plugins --json | "$PY" -c 'import json,sys; e=json.load(sys.stdin)["errors"]; sys.exit(f"plugin errors: {e}" if e else 0)'
"$FF" -q run --preset mock --out mock
for f in mock/results.jsonl mock/fit.json mock/report.html mock/config.toml mock/plan.json; do
  [ -s "$f" ] || fail "run --preset mock wrote no $f"
done
"$FF" fit isoflops_curves.csv -o cs336-fit.json
"$FF" predict cs336-fit.json --compute 1e22
set +e
"$FF" run --out tiny 2>err.txt
code=$?
set -e
cat err.txt
[ "$code" = 2 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q 'flops-fit\[torch\]' err.txt \
  || fail "the default preset without torch: exit $code, expected one line naming flops-fit[torch]"

say "a third-party plugin against the built wheels: flops-fit install"
"$FF" install "$ROOT/docs/examples/flops-fit-example"
"$FF" plugins | grep -q '^trainer *command ' || fail "flops-fit install did not register the example's trainer"
uv pip install --quiet --python "$PY" pytest
cp -r "$ROOT/docs/examples/flops-fit-example/tests" example-tests
"$PY" -m pytest -q -p no:cacheprovider example-tests
"$FF" uninstall flops-fit-example
if "$FF" plugins | grep -q '^trainer *command '; then fail "flops-fit uninstall left the trainer"; fi

say "everything: flops-fit[all] from the wheels"
uv venv --quiet "$WORK/all"
uv pip install --quiet --python "$WORK/all/bin/python" "${WHEELS[@]/$META/flops-fit[all] @ file://$META}"
"$WORK/all/bin/flops-fit" plugins | tee plugins.txt
for name in "trainer *local" "trainer *api" "executor *ray" "executor *slurm" "fitter *robust"; do
  grep -q "^$name " plugins.txt || fail "flops-fit[all] lacks $name"
done
echo "wheel-check OK"
