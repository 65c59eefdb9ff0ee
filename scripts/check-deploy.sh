#!/usr/bin/env bash
# Validates the deployment files without a Docker daemon: docker-compose.yml with
# `docker-compose config`, the Prometheus config and alert rules with `promtool` when it can
# be installed (Debian package prometheus), else a YAML parse. Installs what it needs when
# run as root with apt-get, like scripts/ensure-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # Never start services from a package's install scripts here (prometheus ships one).
    local made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt-get update -qq >/dev/null 2>&1 || true
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
      >/dev/null 2>&1 || status=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    return "$status"
  else
    return 1
  fi
}

command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose || true
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "error: docker-compose is needed to validate docker-compose.yml (Debian: apt-get install docker-compose)" >&2
  exit 1
fi
echo "docker-compose config: docker-compose.yml"
docker-compose -f docker-compose.yml config -q

command -v promtool >/dev/null 2>&1 || apt_install prometheus || true
if command -v promtool >/dev/null 2>&1; then
  promtool check rules deploy/prometheus/alerts.yml
  # The config names the rules by their path inside the container; check a copy that points
  # at the file here.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  sed "s#/etc/prometheus/alerts.yml#$PWD/deploy/prometheus/alerts.yml#" \
    deploy/prometheus/prometheus.yml > "$tmp/prometheus.yml"
  promtool check config "$tmp/prometheus.yml"
else
  echo "promtool not available: the rules are checked by tests/deploy.rs only (YAML parse and metric names)"
fi
