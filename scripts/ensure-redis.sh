#!/usr/bin/env bash
# Make sure redis-server and redis-cli exist (with --with-wrk also wrk for `make bench`,
# with --with-promtool also promtool, from Debian's prometheus package, for the alert
# rules' tests); install Debian's packages when we can.
set -euo pipefail
packages=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || packages+=(redis-server)
for option in "$@"; do
  case "$option" in
    --with-wrk) command -v wrk >/dev/null || packages+=(wrk) ;;
    --with-promtool) command -v promtool >/dev/null || packages+=(prometheus) ;;
  esac
done
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
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  command -v redis-server >/dev/null && exit 0
fi
echo "${packages[*]} missing and cannot be installed here: install Redis 7 (e.g. 'apt-get install redis-server' or 'brew install redis') and run again." >&2
exit 1
