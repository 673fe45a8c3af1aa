#!/usr/bin/env bash
# The real-size checks that need one GPU, in one run of under 10 minutes: the CUDA-only tests, selection at 100k and
# 1M videos (one pool pass per pick against the screened mode, one pass per 32 picks), and the scale benchmark at the
# 7B shape (GRPO step with GPU utilisation, scoring, g step, CLIP features). Each part has its own time limit, so one
# that hangs leaves the others their time; every row is printed as soon as it is measured (the scale benchmark's as
# "measured: | ... |"), so a part stopped at its limit keeps what it measured.
# Prints Markdown tables for docs/benchmarks.md and README's table of stage costs.
#   bash benchmarks/gpu_checks.sh [extra flags for scale.py]
# Limits (seconds): TESTS_LIMIT (60), SELECTION_LIMIT (150), SCALE_LIMIT (360).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
status=0
# the tests that skip without CUDA
if timeout "${TESTS_LIMIT:-60}" $PY -m pytest -q -p no:cacheprovider tests/test_greedy.py tests/test_screened_greedy.py \
    tests/test_scoring_workers.py -k "cuda"; then
    echo "CUDA tests: passed"
else
    echo "CUDA tests: FAILED or stopped at their limit (see above)"
    status=1
fi
# 100k: both modes in both storage dtypes; 1M: the screened mode, and one pass per pick timed on its first 2,000 picks
# (its cost per pick is one read of the whole pool at every step)
timeout "${SELECTION_LIMIT:-150}" bash -c "$PY benchmarks/selection.py --device cuda --reference-size 0 --floor-size 0 \
    --sizes 100000 --modes passes:float32 passes:bfloat16 screened:float32 screened:bfloat16 \
    && $PY benchmarks/selection.py --device cuda --reference-size 0 --floor-size 0 --sizes 1000000 \
    --modes screened:bfloat16 passes:bfloat16:2000" || { echo "selection benchmark: FAILED or stopped"; status=1; }
# one warm-up step and one timed step each: the tower-per-completion GRPO step alone takes about a minute at 7B
timeout "${SCALE_LIMIT:-360}" $PY benchmarks/scale.py --shape 7b --device cuda --dtype bfloat16 --n 16 --steps 1 \
    --num_workers 4 --max_completion_length 64 --stages grpo_step scoring g_step features "$@" \
    || { echo "scale benchmark: FAILED or stopped"; status=1; }
exit $status
