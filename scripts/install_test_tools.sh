#!/usr/bin/env bash
# System tools the test suite needs beyond pip packages: headless Chromium renders the audit
# report in tests/audit. Installs only what is missing: any of the names the test looks for
# will do (chromium, chromium-browser, google-chrome, google-chrome-stable). Installing takes
# Debian's apt (as root or through sudo); elsewhere install a Chromium yourself, or set
# DENSEDET_SKIP_BROWSER=1 to skip that one test.
set -euo pipefail
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "${DENSEDET_SKIP_BROWSER:-}" = 1 ]; then
  echo "install_test_tools.sh: no Chromium; DENSEDET_SKIP_BROWSER=1, so the browser test will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install_test_tools.sh: no Chromium and no sudo to install one: install chromium, or set DENSEDET_SKIP_BROWSER=1" >&2
    exit 1
  fi
  SUDO="sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_tools.sh: no Chromium and no apt-get to install one: install chromium, or set DENSEDET_SKIP_BROWSER=1" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
