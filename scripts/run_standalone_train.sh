#!/usr/bin/env bash
# Single-process training (one CPU or one Ascend device).
# Usage: bash scripts/run_standalone_train.sh CONFIG [DEVICE_ID] [extra tools/train.py args ...]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "Usage: bash $0 CONFIG [DEVICE_ID] [--resume DIR] [--set key=value ...]"; exit 1
fi
CONFIG=$1; shift
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then export DEVICE_ID=$1; shift; fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec python "$ROOT/tools/train.py" --config "$CONFIG" "$@"
