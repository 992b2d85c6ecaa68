#!/usr/bin/env bash
# Debian's Chromium + ChromeDriver (+ a Korean font for readable screenshots) for the browser test.
# Best effort: where they cannot be installed, tests/test_browser.py skips and says why.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if ! command -v apt-get >/dev/null; then echo "no apt-get: the browser test will skip"; exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
($SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-nanum >/dev/null) \
  || echo "could not install chromium: the browser test will skip"
exit 0
