#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, in a few minutes, from a fresh clone.
#
#   bench/gpu_check.sh              # install (README's line), then benchmark on CUDA and compare with the CPU
#   bench/gpu_check.sh --dry-run    # the same steps on the CPU with --quick-sized work (CI runs this)
#   GPU_CHECK_DRY_RUN=1 bench/gpu_check.sh
#
# 1. Installs what it needs with the README's own install line (skipped when .venv already imports PeerCare and,
#    off a dry run, sees a GPU; GPU_CHECK_SKIP_INSTALL=1 skips it always). PYTHON=... uses another interpreter.
# 2. bench.inference on the device: PeerCare's engine (bf16 on a GPU) against the naive way (one model call per
#    reply and mechanism): replies/s, p50/p99 latency at 70% load, the naive side's GPU memory, share of the
#    GPU's bf16 peak.
# 3. bench.gpu_check: the engine on the device in bf16 and in fp32 against the CPU in fp32 on the same replies:
#    replies/s, peak GPU memory, share of the bf16 peak, and the check: the same risk tier for every post and
#    at least 99% of the same ER/IP/EX levels. Exit code 1 when the GPU's scores differ.
# Results: the two reports on stdout, and JSON in $GPU_CHECK_OUT (default bench/gpu-check-results/).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (use --dry-run)" >&2; exit 2 ;;
    esac
done
OUT="${GPU_CHECK_OUT:-bench/gpu-check-results}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-.venv/bin/python}"

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

# -- 1. install ---------------------------------------------------------------------------------------------
ready() {
    [ -x "$PYTHON" ] || return 1
    if [ "$DRY_RUN" = 1 ]; then
        "$PYTHON" -c 'import bot, inference, bench, torch' 2>/dev/null
    else
        "$PYTHON" -c 'import bot, inference, bench, torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
    fi
}
step "install"
if [ "${GPU_CHECK_SKIP_INSTALL:-0}" = 1 ] || ready; then
    echo "using $PYTHON as it is"
else
    # The README's install line, verbatim (as .ci/run does for the test command), without the command it runs after.
    INSTALL=$(grep -oE 'python3 -m venv \.venv && \.venv/bin/pip install -q torch==[0-9.]+ && \.venv/bin/pip install -q -e "\.\[dev\]"' README.md | head -n 1)
    [ -n "$INSTALL" ] || { echo "gpu_check.sh: README.md has no install line to run" >&2; exit 1; }
    echo "$INSTALL"
    eval "$INSTALL"
    PYTHON=.venv/bin/python
fi
if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu; QUICK=(--quick)
    echo "dry run: CPU, quick-sized work"
else
    DEVICE=cuda; QUICK=()
    "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || { echo "gpu_check.sh: torch sees no CUDA GPU here (nvidia-smi? a CUDA build of torch?); --dry-run runs on the CPU" >&2; exit 1; }
    "$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'
fi

# -- 2. throughput and latency against the naive way --------------------------------------------------------
step "bench.inference on $DEVICE (PeerCare engine vs naive)"
"$PYTHON" -m bench.inference --device "$DEVICE" --backend inprocess --no-precisions --json "${QUICK[@]}" \
    | tee "$OUT/inference.log"
tail -n 1 "$OUT/inference.log" > "$OUT/inference.json"
GFLOP=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["naive"].get("useful_gflop_per_reply") or "")' "$OUT/inference.json")

# -- 3. bf16 and fp32 on the device against the CPU ----------------------------------------------------------
step "bench.gpu_check on $DEVICE (bf16 and fp32 vs CPU fp32)"
status=0
"$PYTHON" -m bench.gpu_check --device "$DEVICE" --json "${QUICK[@]}" ${GFLOP:+--useful-gflop-per-reply "$GFLOP"} \
    | tee "$OUT/precisions.log" || status=$?
tail -n 1 "$OUT/precisions.log" > "$OUT/precisions.json"

step "done"
echo "results: $OUT/inference.json $OUT/precisions.json"
if [ "$status" != 0 ]; then
    echo "gpu_check.sh: the device's scores differ from the CPU's (see above)" >&2
fi
exit "$status"
