#!/usr/bin/env bash
# Install Debian's chromium for the browser tests if it is missing.
# Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! chromium is missing and cannot be installed here (need root and apt-get): the browser tests will FAIL." >&2
  echo "   Install chromium yourself, or run: .venv/bin/python -m pytest -m 'not browser'" >&2
  exit 0
fi
echo "installing Debian's chromium for the browser tests with apt-get (about 30 s, ~115 packages; see README)…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq chromium >/dev/null 2>&1 \
  || echo "!! apt-get install chromium failed: the browser tests will FAIL" >&2
exit 0
