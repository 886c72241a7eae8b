#!/usr/bin/env bash
# Install everything, then run the whole test suite. pytest's non-zero exits (failures, or 5 for
# "no tests collected") are passed on as they are, so an empty run can never look green.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test drives Debian's chromium (Playwright never downloads a browser of its own here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: run 'sudo apt-get install chromium' once, then this script again." >&2
    exit 1
  fi
fi
export HF_HUB_OFFLINE=1  # tests never touch the network; the hub code is tested against local folders
exec .venv/bin/python -m pytest -q "$@"
