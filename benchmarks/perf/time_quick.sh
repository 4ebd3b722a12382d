#!/usr/bin/env bash
# Issue 9 item 5: the whole quick suite (20 runs x 2 seeds) timed at an earlier commit and at
# the working tree, one after the other, with the same venv, flags and data. Before: the suite
# file of that commit (benchmarks/quick.toml then), after: the packaged `quick`. Fresh results
# folders each time, so nothing is skipped as finished. Run it on a quiet machine.
#
#   benchmarks/perf/time_quick.sh [BEFORE_COMMIT=2dd2651] [DATA_ROOT=../shared/data]
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=${1:-2dd2651}
DATA=$(realpath "${2:-../shared/data}")
PY=$PWD/.venv/bin/python
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/before" && git archive "$BEFORE" | tar -x -C "$TMP/before"
export OMP_NUM_THREADS=1

timed() {  # label commit dir spec
  local start end
  start=$(date +%s.%N)
  (cd "$3" && PYTHONPATH="$3" "$PY" -m comet_cl.cli run "$4" --workers 2 --quiet \
     --data-root "$DATA" --out "$TMP/out-$1" > "$TMP/$1.log" 2>&1)
  end=$(date +%s.%N)
  printf '%-8s %s %7.1f s  %s runs\n' "$1" "$2" \
    "$(echo "$end - $start" | bc)" "$(find "$TMP/out-$1" -name summary.json | wc -l)"
}
echo "quick suite, --workers 2, OMP_NUM_THREADS=1, $(nproc --all) cores, $(date -u +%FT%TZ)"
timed before "$BEFORE" "$TMP/before" benchmarks/quick.toml
timed after "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes)" "$PWD" quick
