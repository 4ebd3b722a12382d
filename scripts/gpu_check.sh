#!/usr/bin/env bash
# One short check of the suite on a CUDA GPU, after scripts/setup.sh --dev on a machine with one:
#  1. the device-parametrised tests (models, router, device-resident loader) on cuda;
#  2. the quick suite (one seed, 20 runs) on CUDA with 1, 4 and 8 runs sharing the GPU, through
#     the Ray executor (--gpus-per-run 1, 0.25, 0.125), each into a fresh folder, timed;
#  3. the same at 4 per GPU with bfloat16 mixed precision ([train] amp = true).
# Prints the test summary, a table of wall time and runs per minute per setting (speed-up vs 1
# per GPU), and checks that the float32 settings agree on every run's ACC to the bit (sharing a
# GPU must not change results). Results under $OUT (default /tmp). Sized to fit ~10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-/tmp}/gpu-check
rm -rf "$OUT" && mkdir -p "$OUT"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
$PY -m pytest -q -p no:cacheprovider -k cuda tests/test_models.py tests/test_routing.py tests/test_streams.py

# The quick suite with amp on: a copy of the packaged spec with one line added to [train].
spec=$($PY -c "from comet_cl.config import suite_path; print(suite_path('quick'))")
sed 's/^\[train\]$/[train]\namp = true/' "$spec" | sed 's/^name = "quick"$/name = "quick-amp"/' > "$OUT/quick-amp.toml"
grep -q '^amp = true$' "$OUT/quick-amp.toml"

cpus=$($PY -c "import os; print(os.cpu_count())")
timed() {  # label spec gpus_per_run
  local start end
  start=$(date +%s.%N)
  .venv/bin/comet-cl run "$2" --device cuda --seeds 1 --quiet --executor ray \
    --gpus-per-run "$3" --cpus-per-run 1 --out "$OUT/$1" > "$OUT/$1.log"
  end=$(date +%s.%N)
  echo "$1 $start $end" >> "$OUT/times.txt"
}
timed per-gpu-1 quick 1
timed per-gpu-4 quick 0.25
[ "$cpus" -ge 8 ] && timed per-gpu-8 quick 0.125 || echo "skip 8 per GPU: $cpus CPUs"
timed per-gpu-4-amp "$OUT/quick-amp.toml" 0.25

$PY - "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from comet_cl.results import iter_runs
out = Path(sys.argv[1])
rows = [line.split() for line in (out / "times.txt").read_text().splitlines()]
base = None
print(f"\n{'setting':<16}{'runs':>6}{'wall s':>9}{'runs/min':>10}{'vs 1/GPU':>10}{'mean ACC':>10}")
accs = {}
for label, start, end in rows:
    runs = [r for r in iter_runs(out / label) if r.finished]
    wall = float(end) - float(start)
    base = base or wall
    accs[label] = {(r.config["stream"]["name"], r.config["strategy"]["name"], r.config["seed"]):
                   r.summary["metrics"]["acc"] for r in runs}
    mean = sum(accs[label].values()) / max(1, len(accs[label]))
    print(f"{label:<16}{len(runs):>6}{wall:>9.1f}{60 * len(runs) / wall:>10.1f}{base / wall:>9.2f}x{mean:>10.4f}")
fp32 = [accs[k] for k in accs if "amp" not in k]
same = all(a == fp32[0] for a in fp32)
print("float32 ACC identical across 1/4/8 runs per GPU:", same)
if "per-gpu-4-amp" in accs:
    gap = max(abs(accs["per-gpu-4-amp"][k] - fp32[0][k]) for k in fp32[0])
    print(f"amp vs float32: largest ACC gap {gap:.4f} (stated tolerance 0.02)")
sys.exit(0 if same else 1)
PYEOF
