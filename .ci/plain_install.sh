#!/usr/bin/env bash
# Issue 17 item 6: the project installed WITHOUT extras (no pandas, no dask, no pytest) into a fresh
# venv runs a tiny `sweep --epidemic` and a `replay`. CI otherwise tests only the editable install with
# the dev and distributed extras, which hid runtime imports of dev-only packages.
# Usage: .ci/plain_install.sh [VENV]   (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VENV=${1:-$WORK/venv}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q . > "$WORK/pip.log" 2>&1 || { grep -v "^WARNING: Location" "$WORK/pip.log"; exit 1; }
for extra in pandas dask pytest; do
  if "$VENV/bin/python" -c "import $extra" 2>/dev/null; then
    echo "plain install: $extra is installed, the check would prove nothing"; exit 1
  fi
done
cd "$WORK"                                   # never import the source tree
cat > tiny.toml <<'TOML'
preset = "lang-son"
scale = 0.001
[epidemic]
seeds = 5
calibration = "mixing"
[epidemic.interventions]
days = 25
TOML
export NUMBA_NUM_THREADS=1
"$VENV/bin/proxitrace" sweep --scenario tiny.toml --days 1 --replicates 1 --adoption 0,0.5 --epidemic \
  --out sweep --no-progress > sweep.txt
test -s sweep/epidemic.csv && test -s sweep/coverage.csv
{ echo "t,observer,rid,rssi,tx_power,distance_m"
  for k in $(seq 0 12); do
    echo "$((1600000000 + 120 * k)),0,11,-50,-20,1.0"
    echo "$((1600000000 + 120 * k)),0,22,-95,-20,6.0"
  done; } > log.csv
"$VENV/bin/proxitrace" replay --format csv log.csv --rule bluezone,gaen-ch --out replay
test -s replay/contacts.csv && test -s replay/report.json
echo "plain install: sweep --epidemic and replay ran without the extras"
