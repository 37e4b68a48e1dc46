#!/bin/bash
# The web demo's test in a real headless Chromium: trains a tiny checkpoint, starts tools/serve.py on a free
# 127.0.0.1 port, uploads an image through the page, waits for the answer and saves a screenshot.
#
#   bash scripts/run_browser_test.sh [SCREENSHOT_DIR]          (default: output/browser_test)
#
# Needs a Chromium binary (Debian: apt-get install -y chromium); without one the test is skipped and says why.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/output/browser_test}" && cd "${1:-$ROOT/output/browser_test}" && pwd)
cd "$ROOT"
LMAN_SCREENSHOT_DIR="$OUT" "${PYTHON:-python}" -m pytest -q -rs tests/serve/test_web_demo.py
if [ -f "$OUT/web_demo.png" ]; then
  echo "screenshot: $OUT/web_demo.png"
fi
