#!/usr/bin/env bash
# Make sure a command exists, installing its Debian package when we can:
#   scripts/ensure-apt.sh luacheck lua-check
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 COMMAND DEBIAN_PACKAGE" >&2
  exit 2
fi
command_name=$1
package=$2
command -v "$command_name" >/dev/null && exit 0
if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo -n"; else
      echo "$command_name missing: install with 'sudo apt-get install -y $package' and run again." >&2
      exit 1
    fi
  fi
  echo "Installing $package (Debian package) for $command_name..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$package" >/dev/null
  command -v "$command_name" >/dev/null && exit 0
fi
echo "$command_name missing and cannot be installed here: install Debian's '$package' (or your system's equivalent) and run again." >&2
exit 1
