#!/usr/bin/env bash
# System tools the test suite needs beyond pip packages: headless Chromium renders the audit
# report in tests/audit. Installs only what is missing.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
