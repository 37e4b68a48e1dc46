#!/usr/bin/env bash
# The main job on the built-in default: SynthHuman -> HumanIns -> stage 1 -> stage 2 -> answers -> metrics,
# on the tiny model and the CPU. Usage: bash scripts/run_demo.sh [OUTPUT_DIR] [extra python -m lman_ms.demo args]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-output/demo}
[ $# -gt 0 ] && shift
export GLOG_v=${GLOG_v:-3}
cd "$ROOT"
exec python -m lman_ms.demo --out "$OUT" "$@"
