#!/usr/bin/env bash
# Install everything, then start the app on the shipped default model, warmed up: as soon as the
# server answers, scripts/warm_up.py runs the default page once (imports, model, the default line-up),
# so the first visitor sees results at once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Threads that wait yield the core instead of spinning: under load, spinning OpenMP threads made a
# decode 4-13x slower (PERFORMANCE.md, "Threads under contention").
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
port=8501
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --server.port=*) port="${args[$i]#*=}" ;;
    --server.port) port="${args[$((i + 1))]:-8501}" ;;
  esac
done
.venv/bin/python scripts/warm_up.py "$port" &
exec .venv/bin/streamlit run streamlit_app.py "$@"
