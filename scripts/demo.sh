#!/usr/bin/env bash
# Runs the demo: three simulated MI nodes behind healthgate; prints the URLs. Ctrl-C stops.
# Extra arguments go to `healthgate demo` (e.g. --listen 127.0.0.1:18280 --admin 127.0.0.1:19300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
exec cargo run --release --locked --bin healthgate -- demo "$@"
