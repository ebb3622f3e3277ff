#!/usr/bin/env bash
# Makes sure redis-server (Debian's package) is installed: the global rate
# limit tests start their own server on a free loopback port. Installs it
# with apt-get when missing (as root, or through sudo).
set -euo pipefail
if command -v redis-server >/dev/null; then
  exit 0
fi
echo "tools/redis.sh: installing redis-server (Debian package) for the rate-limit tests"
run() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v apt-get >/dev/null; then
  echo "tools/redis.sh: redis-server is missing and apt-get is not available; install Redis (6 or later) and retry" >&2
  exit 1
fi
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
  || { run apt-get update -qq && run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
redis-server --version
