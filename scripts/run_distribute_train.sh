#!/usr/bin/env bash
# Data-parallel (CPU or Ascend) and multi-node (Ascend, HCCL) training through msrun, with the argument order of
# mindformers' msrun_launcher.sh. Run the same command on every node, changing only NODE_RANK.
#
# Usage: bash scripts/run_distribute_train.sh CONFIG WORKER_NUM [LOCAL_WORKER_NUM] [MASTER_ADDR] [MASTER_PORT]
#            [NODE_RANK] [LOG_DIR] [-- extra tools/train.py args ...]
#   WORKER_NUM        total workers over all nodes (>= 2; use run_standalone_train.sh for one)
#   LOCAL_WORKER_NUM  workers on this node (default: WORKER_NUM)
#   MASTER_ADDR       address of node 0 (default 127.0.0.1)       MASTER_PORT  default 8118
#   NODE_RANK         this node's index (default 0)                LOG_DIR      default output/msrun_log
set -euo pipefail
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 1; }
[ $# -ge 2 ] || usage
CONFIG=$1; WORKER_NUM=$2; shift 2
LOCAL_WORKER_NUM=$WORKER_NUM; MASTER_ADDR=127.0.0.1; MASTER_PORT=8118; NODE_RANK=0; LOG_DIR=output/msrun_log
for var in LOCAL_WORKER_NUM MASTER_ADDR MASTER_PORT NODE_RANK LOG_DIR; do
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then printf -v "$var" '%s' "$1"; shift; fi
done
[ $# -gt 0 ] && [ "$1" == "--" ] && shift
[[ $WORKER_NUM =~ ^[0-9]+$ ]] && [ "$WORKER_NUM" -ge 2 ] || { echo "WORKER_NUM must be >= 2 (got $WORKER_NUM)"; usage; }
[ -f "$CONFIG" ] || { echo "config not found: $CONFIG"; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$LOG_DIR"
echo "msrun: $WORKER_NUM workers ($LOCAL_WORKER_NUM here), master $MASTER_ADDR:$MASTER_PORT, node $NODE_RANK, logs in $LOG_DIR"
exec msrun --worker_num="$WORKER_NUM" --local_worker_num="$LOCAL_WORKER_NUM" --master_addr="$MASTER_ADDR" \
  --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join=True --cluster_time_out=7200 \
  "$ROOT/tools/train.py" --config "$CONFIG" "$@"
