"""Warm a freshly started app: wait for the server, then have it run its default page once.

Streamlit's script health check (enabled in .streamlit/config.toml) runs the entry script in a
throw-away session: that imports torch and transformers, loads the default model into the process's
cache and decodes the default line-up into the shared results, which the first visitor then reads.
Every request here has a time limit, and the script gives up quietly if the server never answers.
"""

import sys
import time
import urllib.request

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8501
base = f"http://127.0.0.1:{port}/_stcore"
started = time.monotonic()
while time.monotonic() - started < 120:
    try:
        if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"ok":
            break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit(0)
try:
    answer = urllib.request.urlopen(f"{base}/script-health-check", timeout=180).read().decode()
except OSError as exc:
    answer = f"failed ({exc})"
print(f"  Warm-up: the default page ran in {time.monotonic() - started:.1f} s ({answer}).", file=sys.stderr)
