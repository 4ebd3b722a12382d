#!/usr/bin/env bash
# Run van de Ven & Tolias' OWN code (github.com/GMvandeVen/continual-learning, commit 9945f84,
# the version of the paper's figures) on this machine's MNIST, as the reference for a
# published figure comet-cl does not reproduce. Results: reports/diagnostics/vandeven-own-code.md
#
#   bash benchmarks/diagnostics/vandeven_own_code.sh THEIR_CHECKOUT MNIST_RAW_DIR OUT_DIR "SEEDS" CONFIG...
#
# THEIR_CHECKOUT: a checkout of their repository at 9945f84 (git archive 9945f84 | tar -x).
# MNIST_RAW_DIR: a folder holding MNIST's four IDX files, gzipped or not (../shared/data/MNIST/raw).
# CONFIG: NAME=ARGS, e.g. "lwf-class=--scenario=class --replay=current --distill",
#         "none-domain=--scenario=domain" or "none-perm=--experiment=permMNIST --scenario=domain"
#         (split MNIST unless ARGS name another experiment). Their defaults do the rest
#         (param_values.py: split MNIST 2,000 iterations, Adam 1e-3, 2 x 400; permuted MNIST
#         5,000 iterations, Adam 1e-4, 2 x 1000, 10 tasks; batch 128). Seeds from 1 as their _compare.py
#         (their seed 0 keeps the digits in order, for plots).
# Needs only torch and torchvision (visdom, which they import unconditionally, is stubbed).
# One split-MNIST run is about 10 minutes on one core; a permuted-MNIST run (50,000 updates)
# about 2 hours (measured 6-8 updates per second beside two other runs), and it cannot resume.
# Prints one line per run: NAME seed S: per-task precision, average.
set -euo pipefail
theirs=$(cd "$1" && pwd); raw=$2; out=$(mkdir -p "$3" && cd "$3" && pwd); seeds=$4; shift 4
python=$(command -v "${PYTHON:-python}")
python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"  # absolute (the runs cd into their checkout), venv kept
mkdir -p "$out/data/mnist/MNIST/raw" "$out/stub"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$raw/$f" ]; then cp "$raw/$f" "$out/data/mnist/MNIST/raw/$f"
  else gunzip -c "$raw/$f.gz" > "$out/data/mnist/MNIST/raw/$f"; fi
done
echo "class Visdom: pass" > "$out/stub/visdom.py"
for seed in $seeds; do
  for config in "$@"; do
    name=${config%%=*}; args=${config#*=}
    log="$out/$name-seed$seed.log"
    (cd "$theirs" && PYTHONPATH="$out/stub" "$python" main.py --experiment=splitMNIST $args \
        --seed="$seed" --data-dir="$out/data" --results-dir="$out/results" --no-gpus > "$log" 2>&1)
    # the last precision printed for each task (their final evaluation), in task order
    tasks=$(grep -E '^ - Task [0-9]+: ' "$log" | awk '{t = $3; sub(":", "", t); v[t] = $4;
        if (t + 0 > n) n = t + 0} END {for (i = 1; i <= n; i++) printf "%s%s", v[i], (i < n ? " " : "")}' || true)
    average=$(grep 'average precision' "$log" | tail -1 | awk '{print $NF}' || true)
    echo "$name seed $seed: tasks [$tasks] average ${average:-missing, see $log}"
  done
done
