#!/bin/bash
# Submits plan → parts (a job array) → merge, each step starting only when
# the previous one succeeded (--dependency=afterok; for an array, afterok
# waits for every task).
#
#   MODEL=/shared/models/Llama-3-70B OUT=/shared/seedlm/llama70b ./submit.sh [SBATCH-OPTION...]
#
# Options after submit.sh go to every sbatch and override the scripts'
# #SBATCH lines: --account=..., --partition=..., or --cpus-per-task=4 on
# smaller nodes.
set -euo pipefail
: "${MODEL:?set MODEL to the checkpoint: a .safetensors file, a sharded model folder or its index}"
: "${OUT:?set OUT to a folder on storage every node shares}"
mkdir -p "$OUT"
export MODEL OUT
cd "$(dirname "$0")"
plan=$(sbatch --parsable --export=ALL "$@" plan.sbatch)
parts=$(sbatch --parsable --export=ALL --dependency=afterok:"$plan" "$@" compress.sbatch)
merge=$(sbatch --parsable --export=ALL --dependency=afterok:"$parts" "$@" merge.sbatch)
echo "submitted: plan $plan, parts $parts (array), merge $merge; result: $OUT/model.seedlm"
