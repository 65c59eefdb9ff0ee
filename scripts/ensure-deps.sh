#!/usr/bin/env bash
# Installs (or explains how to install) what a fresh Debian machine with only the Rust
# toolchain lacks to build healthgate: cmake, for Pingora's zlib-ng dependency.
set -euo pipefail

need_cmake() { ! command -v cmake >/dev/null 2>&1; }

if need_cmake; then
  echo "healthgate: cmake is needed to build Pingora (zlib-ng); installing it..." >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null
  fi
fi
if need_cmake; then
  echo "error: cmake is missing and could not be installed automatically." >&2
  echo "       Install it (Debian/Ubuntu: sudo apt-get install cmake) and run this again." >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
  echo "error: a C compiler (cc) is needed; install it (Debian: sudo apt-get install gcc)." >&2
  exit 1
fi
