#!/usr/bin/env bash
# Make sure redis-server and redis-cli exist (and with --with-wrk, wrk for `make bench`);
# install Debian's packages when we can.
set -euo pipefail
packages=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || packages+=(redis-server)
if [ "${1:-}" = "--with-wrk" ] && ! command -v wrk >/dev/null; then packages+=(wrk); fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo -n"; else
      echo "${packages[*]} missing: install with 'sudo apt-get install -y ${packages[*]}' and run again." >&2
      exit 1
    fi
  fi
  echo "Installing ${packages[*]} (Debian packages)..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
  command -v redis-server >/dev/null && exit 0
fi
echo "${packages[*]} missing and cannot be installed here: install Redis 7 (e.g. 'apt-get install redis-server' or 'brew install redis') and run again." >&2
exit 1
