#!/usr/bin/env bash
# The reference for contrastive and group beam search: transformers 4.55.4, the last release whose
# generate() runs them in its core (`_contrastive_search`, `_group_beam_search`). It lives in its own
# venv, .cache/venv-transformers-4.55/ (git-ignored), made once and reused; prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/venv-transformers-4.55
PINS=(torch==2.13.0 transformers==4.55.4 safetensors)
STAMP="$VENV/.installed-$(echo "${PINS[*]}" | tr ' =' '_-')"
if [ ! -f "$STAMP" ]; then
  rm -rf "$VENV"
  mkdir -p .cache
  python3 -m venv "$VENV" >&2
  # --no-compile: byte-compiling all of torch takes longer than the install; imports compile what they use
  "$VENV/bin/pip" install -q --no-compile "${PINS[@]}" >&2
  "$VENV/bin/python" -c "import torch, transformers; assert transformers.__version__ == '4.55.4'" >&2
  touch "$STAMP"
fi
echo "$PWD/$VENV/bin/python"
