#!/usr/bin/env bash
# Install everything, then run the whole test suite. pytest's non-zero exits (failures, or 5 for
# "no tests collected") are passed on as they are, so an empty run can never look green.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1  # tests never touch the network; the hub code is tested against local folders
exec .venv/bin/python -m pytest -q "$@"
