#!/usr/bin/env bash
# Installs what tests/test_browser.py needs: Debian's Chromium (when /usr/bin/chromium is
# missing and we are root) and the npm packages pinned by package-lock.json (playwright-core
# drives the browser; `make vendor-js` copies the widget JavaScript the book ships from npm).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium
  else
    echo "tests/browser/setup.sh: /usr/bin/chromium is missing; install it (sudo apt-get install chromium)" >&2
    exit 1
  fi
fi
command -v npm >/dev/null || { echo "tests/browser/setup.sh: npm is missing (Node.js 20 or later)" >&2; exit 1; }
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --ignore-scripts
fi
