#!/usr/bin/env bash
# For the browser tests: Debian's Chromium (Playwright drives it; its own browser download
# is never used) and axe-core from the npm registry (tests/browser/package-lock.json, never
# committed into the repo). Installs what is missing when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo -n"; fi

if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    echo "Installing chromium (Debian package) for the browser tests..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium missing: install it with 'sudo apt-get install -y chromium' for the browser tests." >&2
    exit 1
  fi
fi

if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
  if ! command -v npm >/dev/null; then
    if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
      echo "Installing npm (Debian package) to fetch axe-core..."
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
    else
      echo "npm missing: install Node.js and npm, then run 'make install' again (axe-core for the browser tests)." >&2
      exit 1
    fi
  fi
  echo "Installing axe-core from the npm registry (tests/browser/node_modules)..."
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
