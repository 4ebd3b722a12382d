#!/usr/bin/env bash
# One short check of the suite on a CUDA GPU: the device-parametrised model and router tests
# on cuda, then the quick suite (one seed) with --device cuda. Run after scripts/setup.sh --dev
# on a machine with a GPU; prints the test summary and the suite's ACC table.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
.venv/bin/python -m pytest -q -p no:cacheprovider -k cuda tests/test_models.py tests/test_routing.py
.venv/bin/comet-cl run quick --device cuda --seeds 1 --quiet \
  --out "${OUT:-/tmp}/gpu-quick"
