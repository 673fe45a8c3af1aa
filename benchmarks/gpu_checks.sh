#!/usr/bin/env bash
# The real-size checks that need one GPU, in one run: the CUDA-only tests, the scale
# benchmark at the 7B shape (scoring, g step, GRPO step with GPU utilisation, CLIP features) and selection at 100k and
# 1M videos. Prints Markdown tables for docs/benchmarks.md and README's table of stage costs.
#   bash benchmarks/gpu_checks.sh [extra flags for scale.py]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# the tests that skip without CUDA (a failure is reported and the benchmarks still run)
if $PY -m pytest -q -p no:cacheprovider tests/test_greedy.py tests/test_scoring_workers.py -k "cuda"; then
    echo "CUDA tests: passed"
else
    echo "CUDA tests: FAILED (see above)"
fi
$PY benchmarks/selection.py --device cuda --reference-size 0 --floor-size 0 --sizes 100000 1000000 \
    --half-dtype bfloat16
$PY benchmarks/scale.py --shape 7b --device cuda --dtype bfloat16 --n 32 --steps 2 --num_workers 4 \
    --max_completion_length 64 "$@"
