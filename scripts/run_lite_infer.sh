#!/bin/bash
# Answer one question with the MindIR graphs of tools/export.py on MindSpore Lite (greedy decoding).
#
#   bash scripts/run_lite_infer.sh EXPORT_DIR IMAGE INSTRUCTION [extra tools/lite_infer.py args]
#
# e.g. bash scripts/run_lite_infer.sh output/export img.jpg "Find every face." --max-new-tokens 128
# Extra args are passed on (--backend graphcell runs the same graphs with MindSpore where Lite is missing).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash $0 EXPORT_DIR IMAGE INSTRUCTION [extra tools/lite_infer.py args]" >&2
  exit 2
fi
EXPORT_DIR=$1
IMAGE=$2
INSTRUCTION=$3
shift 3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec "${PYTHON:-python}" "$ROOT/tools/lite_infer.py" --export_dir "$EXPORT_DIR" --image "$IMAGE" \
  --instruction "$INSTRUCTION" "$@"
