#!/usr/bin/env bash
# One fold trained on several nodes with torchrun (DistributedDataParallel): run this script on every node
# with the same MASTER_ADDR and NNODES and its own NODE_RANK (under Slurm: srun sets SLURM_NODEID).
# training.batch_size is per process: the global batch is NNODES x NPROC x batch_size.
#   MASTER_ADDR=node0 NNODES=2 NODE_RANK=0 DATA=/shared/LiTS OUT=/shared/runs/liver/fold0 bash train_multinode.sh
set -euo pipefail
: "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"
: "${DATA:?set DATA}"
: "${OUT:?set OUT}"
NODE_RANK="${NODE_RANK:-${SLURM_NODEID:-0}}"
# shellcheck disable=SC2086
exec torchrun --nnodes="${NNODES:-2}" --nproc_per_node="${NPROC:-1}" --node_rank="$NODE_RANK" \
    --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:${MASTER_PORT:-29500}" --rdzv_id="${RDZV_ID:-medseg}" \
    -m medseg train "${PIPELINE:-liver}" --data "$DATA" --fold "${FOLD:-0}" --out "$OUT" --no-progress \
    ${MEDSEG_TRAIN_ARGS:-}
