#!/usr/bin/env bash
# Installs (or explains how to install) what a fresh Debian machine with only the Rust
# toolchain lacks. Always: cmake (Pingora's zlib-ng dependency builds with it). With --test
# also Chromium and ChromeDriver (the status page's browser test); with --bench the peers and
# load tool the benchmarks compare against: nginx, haproxy, wrk.
set -euo pipefail

# command:package
wanted=(cmake:cmake)
case "${1:-}" in
  --test) wanted+=(chromium:chromium chromedriver:chromium-driver) ;;
  --bench) wanted+=(nginx:nginx haproxy:haproxy wrk:wrk) ;;
esac

# nginx and haproxy live in /usr/sbin, which is not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# The packages whose command is missing.
missing() {
  local m=()
  for pair in "${wanted[@]}"; do have "${pair%%:*}" || m+=("${pair#*:}"); done
  echo "${m[@]:-}"
}

absent=$(missing)
if [ -n "$absent" ]; then
  echo "healthgate: installing what this machine lacks: $absent" >&2
  # shellcheck disable=SC2086 # one word per package
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $absent >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $absent >/dev/null
  fi
fi
absent=$(missing)
if [ -n "$absent" ]; then
  echo "error: missing and could not be installed automatically: $absent" >&2
  echo "       Install them (Debian/Ubuntu: sudo apt-get install $absent) and run this again." >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
  echo "error: a C compiler (cc) is needed; install it (Debian: sudo apt-get install gcc)." >&2
  exit 1
fi
