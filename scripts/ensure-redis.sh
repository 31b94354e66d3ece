#!/usr/bin/env bash
# Make sure redis-server and redis-cli exist; install Debian's package when we can.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo -n"; else
      echo "redis-server is missing: install it with 'sudo apt-get install -y redis-server' and run again." >&2
      exit 1
    fi
  fi
  echo "Installing redis-server (Debian package)..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null && exit 0
fi
echo "redis-server is missing and cannot be installed here: install Redis 7 (e.g. 'apt-get install redis-server' or 'brew install redis') and run again." >&2
exit 1
