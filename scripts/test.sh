#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that start simulated MI nodes
# and the real healthgate binary on 127.0.0.1; both workspace packages (healthgate and sim/,
# the default members). Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --test
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --locked "$@"
else
  echo "cargo-nextest not found; using cargo test (install: cargo install cargo-nextest --locked)" >&2
  exec cargo test --locked "$@"
fi
