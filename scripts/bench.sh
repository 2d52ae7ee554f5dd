#!/usr/bin/env bash
# make bench: compress and decompress the real models in ../shared/data and a
# generated 4096×4096 matrix with bin/seedlm, and write docs/BENCHMARKS.md.
#
#   scripts/bench.sh            # full run (minutes), writes docs/BENCHMARKS.md
#   scripts/bench.sh -quick     # demo model + 256×256 matrix, writes out/bench/BENCHMARKS.md
#
# Extra flags go to scripts/bench (see go run ./scripts/bench -h), e.g.
#   scripts/bench.sh -seedlm-flags="--seed-bits 12"
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/seedlm ] || go build -o bin/seedlm ./cmd/seedlm
exec go run ./scripts/bench "$@"
