#!/usr/bin/env bash
# The real-size checks that need one GPU, in one run of about 9 minutes: the CUDA-only tests, selection at 100k and
# 1M videos, and the scale benchmark at the 7B shape (GRPO step with GPU utilisation, scoring, g step, CLIP features).
# Each part has its own time limit, so one that hangs leaves the others their time; the scale benchmark prints each
# row ("measured: | ... |") as soon as it is measured, so a run stopped at its limit keeps what it measured.
# Prints Markdown tables for docs/benchmarks.md and README's table of stage costs.
#   bash benchmarks/gpu_checks.sh [extra flags for scale.py]
# Limits (seconds): TESTS_LIMIT (60), SELECTION_LIMIT (100), SCALE_LIMIT (400).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
status=0
# the tests that skip without CUDA
if timeout "${TESTS_LIMIT:-60}" $PY -m pytest -q -p no:cacheprovider tests/test_greedy.py tests/test_scoring_workers.py \
    -k "cuda"; then
    echo "CUDA tests: passed"
else
    echo "CUDA tests: FAILED or stopped at their limit (see above)"
    status=1
fi
timeout "${SELECTION_LIMIT:-100}" $PY benchmarks/selection.py --device cuda --reference-size 0 --floor-size 0 \
    --sizes 100000 1000000 --half-dtype bfloat16 || { echo "selection benchmark: FAILED or stopped"; status=1; }
# one warm-up step and one timed step each: the tower-per-completion GRPO step alone takes about a minute at 7B
timeout "${SCALE_LIMIT:-400}" $PY benchmarks/scale.py --shape 7b --device cuda --dtype bfloat16 --n 16 --steps 1 \
    --num_workers 4 --max_completion_length 64 --stages grpo_step scoring g_step features "$@" \
    || { echo "scale benchmark: FAILED or stopped"; status=1; }
exit $status
