#!/usr/bin/env bash
# System tools the test suite needs beyond pip packages; installs only what is missing:
# - headless Chromium renders the audit report in tests/audit (any of chromium,
#   chromium-browser, google-chrome, google-chrome-stable will do); required, unless
#   DENSEDET_SKIP_BROWSER=1 skips that one test;
# - jpegtran (Debian's libjpeg-turbo-progs) writes the arithmetic-coded JPEGs the readers'
#   tests decode; optional: without it (and without apt to install it) those tests are skipped,
#   as they say.
# Installing takes Debian's apt (as root or through sudo); elsewhere install them yourself.
set -euo pipefail
need=()
browser=0
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then
    browser=1
    break
  fi
done
if [ "$browser" = 0 ]; then
  if [ "${DENSEDET_SKIP_BROWSER:-}" = 1 ]; then
    echo "install_test_tools.sh: no Chromium; DENSEDET_SKIP_BROWSER=1, so the browser test will be skipped" >&2
  else
    need+=(chromium)
  fi
fi
optional=()
if ! command -v jpegtran >/dev/null 2>&1; then
  optional+=(libjpeg-turbo-progs)
fi
if [ "${#need[@]}" = 0 ] && [ "${#optional[@]}" = 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi
if { [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; } || ! command -v apt-get >/dev/null 2>&1; then
  if [ "${#need[@]}" != 0 ]; then
    echo "install_test_tools.sh: no Chromium and no apt-get (with root or sudo) to install one: install chromium, or set DENSEDET_SKIP_BROWSER=1" >&2
    exit 1
  fi
  echo "install_test_tools.sh: no jpegtran and no apt-get (with root or sudo) to install it: the arithmetic-coded JPEG tests will be skipped" >&2
  exit 0
fi
if [ "${#need[@]}" != 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${#optional[@]}" != 0 ]; then
  # (an optional tool: a failing apt, its index or the package, only skips its tests)
  if ! { [ "${#need[@]}" != 0 ] || $SUDO apt-get update -qq; } \
      || ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${optional[@]}" >/dev/null; then
    echo "install_test_tools.sh: could not install ${optional[*]}: the arithmetic-coded JPEG tests will be skipped" >&2
  fi
fi
