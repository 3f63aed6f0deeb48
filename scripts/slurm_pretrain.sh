#!/usr/bin/env bash
# Example: herd pretraining on a Slurm cluster, one torchrun per node, 8 GPUs per node.
#   sbatch --nodes=16 scripts/slurm_pretrain.sh configs/pretrain/llama3-405b.toml parallel.tp=8 parallel.pp=16
# The mesh is [dp_replicate, dp_shard, pp, cp, tp] (TP innermost, inside one node's NVLink domain).
#SBATCH --job-name=herd-pretrain
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --exclusive
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch scripts/slurm_pretrain.sh CONFIG [overrides...]}
shift
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=8
export TORCH_NCCL_AVOID_RECORD_STREAMS=1   # the paper's setting for async P2P in pipeline parallelism [P §3.3.2]
# A failed rank restarts the whole group from the last checkpoint [P §3.3.4]; a rendezvous store per restart,
# or the restarted group reads the dead group's addresses (pytorch/pytorch#135712).
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

srun torchrun \
  --nnodes="$SLURM_NNODES" --nproc_per_node=8 --max-restarts=3 \
  --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$HEAD_NODE:29500" \
  -m herd.cli pretrain "$CONFIG" "$@"
