#!/usr/bin/env bash
# The GPU path, measured: CUDA tests, exact-CE implementations at 1e5 and 1e6 items (time and
# max_memory_allocated), memprof predicted vs measured on CUDA, bf16 and compiled training, training
# and evaluation on a 10^6-item catalogue per loss (peak vs memprof, s/epoch vs FLOP floor), and a
# LastFM gru4rec,sasrec x bce,ce,cce grid (1 seed, several runs at once on the GPU via --jobs).
#
#   benchmarks/gpu_check.sh               # on a CUDA machine: under 8 minutes on one H200
#   benchmarks/gpu_check.sh --cpu-smoke   # every piece on CPU with tiny sizes (checks the script)
#
# Env: SEQBENCH_MIRROR (offline data mirror; default ../shared/datasets next to the checkout),
# GPU_CHECK_DIR (scratch directory; default a new temporary one), GPU_CHECK_JOBS (grid --jobs,
# default 6). Each section has its own time limit, so a hung piece cannot eat the others' time;
# a failing section prints its exit status and the script goes on.
set -uo pipefail

SMOKE=0
case "${1:-}" in
  --cpu-smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: $0 [--cpu-smoke]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
MIRROR="${SEQBENCH_MIRROR:-$(cd .. && pwd)/shared/datasets}"
WORK="${GPU_CHECK_DIR:-$(mktemp -d /tmp/seqbench-gpu-check.XXXXXX)}"
JOBS="${GPU_CHECK_JOBS:-6}"
STARTED=$(date +%s)
FAILED=()

section() { echo; echo "=== $1  [$(( $(date +%s) - STARTED )) s]"; }
# run LIMIT NAME CMD...: the command under a time limit; a failure is reported, not fatal.
run() {
  local limit=$1 name=$2; shift 2
  timeout --kill-after=10 "$limit" "$@"
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "!!! $name exited with status $status$([ "$status" -eq 124 ] && echo " (time limit ${limit}s)")"
    FAILED+=("$name")
  fi
}

if [ "$SMOKE" -eq 1 ]; then
  DEVICE=cpu
  TESTS=(tests/test_speed.py)
  CE_ARGS=(--device cpu --rows 256 --catalogs 1e4 --repeats 1)
  MEMPROF_ARGS=(--device cpu --catalog 1e3 --losses cce,bce --batch-size 8 --max-len 5)
  TRAIN_ARGS=(--epochs 1 --set max_len=10)
  GRID_ARGS=(--epochs 1 --set max_len=10 --jobs 2)
  LARGE_ARGS=(--items 2e4 --users 600 --length 10 --epochs 1 --losses "sce,cce[chunked]" --threads 1)
  LARGE_LIMIT=300
else
  DEVICE=cuda
  TESTS=(tests/test_losses_chunked.py tests/test_speed.py tests/test_training.py tests/test_memprof.py tests/test_models.py tests/test_parallel.py -n 4)
  CE_ARGS=(--device cuda --rows 12800 --catalogs 1e5,1e6 --repeats 3)
  MEMPROF_ARGS=(--device cuda --catalog 1e4,1e5,1e6 --losses ce,cce,cce[chunked],sce,bce)
  TRAIN_ARGS=(--epochs 3)
  GRID_ARGS=(--jobs "$JOBS")
  LARGE_ARGS=(--items 1e6 --users 20000 --length 30 --epochs 2 --losses "sce,cce[chunked],cce[torch],sampled-ce,bce")
  LARGE_LIMIT=240
fi

section "device"
python - "$DEVICE" <<'EOF'
import sys, torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(f"{torch.cuda.get_device_name(0)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
elif sys.argv[1] == "cuda":
    sys.exit("no CUDA device: run with --cpu-smoke")
EOF
[ $? -eq 0 ] || exit 2

section "tests (device auto = $DEVICE)"
run 150 tests python -m pytest -q -p no:cacheprovider "${TESTS[@]}"

section "exact CE implementations, float32"
run 90 ce python benchmarks/ce_device.py "${CE_ARGS[@]}"
if [ "$SMOKE" -eq 0 ]; then
  section "exact CE implementations, bf16 autocast"
  run 45 ce-bf16 python benchmarks/ce_device.py "${CE_ARGS[@]}" --catalogs 1e6 --bf16
fi

section "memprof: predicted vs measured"
run 60 memprof-measure seqbench memprof "${MEMPROF_ARGS[@]}" --mode measure --json --quiet >"$WORK/measured.json"
run 60 memprof-predict seqbench memprof "${MEMPROF_ARGS[@]}" --mode predict --json --quiet >"$WORK/predicted.json"
python - "$WORK/measured.json" "$WORK/predicted.json" <<'EOF'
import json, sys
from tabulate import tabulate
try:
    measured, predicted = (json.load(open(path)) for path in sys.argv[1:3])
except (OSError, ValueError) as error:
    sys.exit(f"memprof output unreadable: {error}")
key = lambda r: (r["loss"], r["catalog"])
guess = {key(r): r.get("peak_bytes") for r in predicted}
rows = []
for r in measured:
    p, m = guess.get(key(r)), r.get("peak_bytes")
    rows.append({"loss": r["loss"], "catalog": r["catalog"], "mode": r["mode"], "measured MiB": m and round(m / 2**20, 1),
                 "predicted MiB": p and round(p / 2**20, 1), "predicted/measured": round(p / m, 3) if p and m and r["mode"] == "measured" else "", "s/step": r.get("seconds") and round(r["seconds"], 4)})
print(tabulate(rows, headers="keys", tablefmt="github"))
EOF

section "prepare lastfm"
run 60 prepare seqbench prepare lastfm --mirror "$MIRROR" --data-dir "$WORK/data" --quiet

section "bf16 and torch.compile training (sasrec/cce, lastfm)"
for flags in "bf16=true" "compile=true"; do
  echo "--- $flags"
  run 90 "train-$flags" seqbench train --dataset lastfm --model sasrec --loss cce --device "$DEVICE" "${TRAIN_ARGS[@]}" \
    --set "$flags" --data-dir "$WORK/data" --results "$WORK/results-train" --json --quiet >"$WORK/train.json"
  python -c 'import json, sys; r = json.load(open(sys.argv[1])); t = r["training"]; print(r["run_id"], r["status"], "epochs", t["epochs_run"], "train s", round(t["train_seconds"], 2), "test NDCG@10", round(r["metrics"]["test"]["NDCG@10"], 4))' "$WORK/train.json" || true
done

section "10^6 items: training and evaluation per loss, peak vs memprof (benchmarks/large_catalogue.py)"
run "$LARGE_LIMIT" large-catalogue python benchmarks/large_catalogue.py "${LARGE_ARGS[@]}" --device "$DEVICE" --work "$WORK/large"

section "grid: lastfm gru4rec,sasrec x bce,ce,cce, seed 0 (${GRID_ARGS[*]})"
grid_start=$(date +%s)
run 180 grid seqbench compare --datasets lastfm --models gru4rec,sasrec --losses bce,ce,cce --seeds 0 --device "$DEVICE" \
  "${GRID_ARGS[@]}" --data-dir "$WORK/data" --results "$WORK/results" --quiet
echo "grid wall: $(( $(date +%s) - grid_start )) s"
run 60 runs seqbench runs --results "$WORK/results" 2>/dev/null || true

section "done in $(( $(date +%s) - STARTED )) s; scratch: $WORK"
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "failed sections: ${FAILED[*]}"
  exit 1
fi
