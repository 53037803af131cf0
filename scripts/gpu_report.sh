#!/usr/bin/env bash
# Everything issue 14 asks of a machine with a CUDA GPU, in one go (GPU time is short: run this once):
#   1. the CUDA tests: tests/test_cuda_operators.py, tests/test_triton.py (the Triton kernels on the device), test_cost
#   2. the GPU latency table: scripts/gpu_latency.py --graphs (forward+backward / bilinear, float32, batch 1 and 32
#      at 28/64/128/256), into <root>/gpu-<model>-logs/latency_ratios.md
#   3. python -m bench run --suite all --device cuda (the default profile): the harness writes the run folder
#      <root>/gpu-<model>/ (meta.json, cells/, results.csv, summary.csv, report.html with Fig. 5's chart)
#   4. the whole test suite (python -m pytest), CUDA tests included
# The logs of every step go to <root>/gpu-<model>-logs/. A failing step is logged and the script goes on; the exit
# status is the number of failed steps. On the device tool: bash scripts/gpu_report.sh --root "$OUT".
#
# Usage: bash scripts/gpu_report.sh [--root DIR] [--steps 1,2,3,4] [--dry-run]
#   --root DIR   where gpu-<model>/ goes (default: reports)
#   --steps      which steps, in that order (default: all four)
#   --dry-run    no GPU needed: check the script's parts on the CPU (python syntax, the table script's --dry-run, the
#                bench run's plan) and print what a real run would do
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's packages, installed or not
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"

root=reports steps=1,2,3,4 dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "gpu_report.sh: unknown argument '$1' (expected --root DIR, --steps 1,2,3,4 or --dry-run)" >&2; exit 2 ;;
  esac
done

if [ "$dry" = 1 ]; then
  model=dry-run
else
  model=$(python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" 2>/dev/null) || {
    echo "gpu_report.sh: no CUDA device here (use --dry-run to check the script)" >&2; exit 2; }
fi
slug=$(printf '%s' "$model" | tr '[:upper:]' '[:lower:]' | sed -e 's/^nvidia //' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
out="$root/gpu-$slug"
logs="$root/gpu-$slug-logs"
failed=0

run() {  # run NAME COMMAND...: the command's output into logs/NAME.log, its time and status on stdout
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" >"$logs/$name.log" 2>&1
  local status=$?
  echo "   status $status after $((SECONDS - start)) s; tail of $logs/$name.log:"
  tail -n 5 "$logs/$name.log" | sed 's/^/   | /'
  [ $status -eq 0 ] || failed=$((failed + 1))
}

want() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if [ "$dry" = 1 ]; then
  mkdir -p "$logs"
  run syntax python -m py_compile scripts/gpu_latency.py tests/test_cuda_operators.py tests/test_triton.py \
    interpolators/_triton_sampling.py interpolators/lstn/triton.py interpolators/estn/triton.py
  want 1 && run cuda-tests-collect python -m pytest -q --collect-only -o addopts= tests/test_cuda_operators.py tests/test_triton.py
  want 2 && run latency-dry-run python scripts/gpu_latency.py --dry-run
  want 3 && run bench-plan python -m bench list
  echo "a real run writes $root/gpu-<model>/ (bench run --suite all --device cuda) and $root/gpu-<model>-logs/"
  rm -rf "$logs"
  exit $failed
fi

if [ -e "$out" ] && want 3; then
  echo "gpu_report.sh: $out already exists; move it away or pass --root" >&2; exit 2
fi
mkdir -p "$logs"
echo "GPU: $model -> $out"
python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$logs/nvidia-smi.csv" 2>&1 || true

want 1 && run cuda-tests python -m pytest -q -p no:cacheprovider -o addopts=-ra tests/test_cuda_operators.py \
  tests/test_triton.py tests/test_cost.py
if want 2; then
  run latency python scripts/gpu_latency.py --graphs
  grep -E '^\||, torch ' "$logs/latency.log" >"$logs/latency_ratios.md" || true
  cat "$logs/latency_ratios.md"
fi
want 3 && run bench python -m bench run --suite all --device cuda --no-progress --out "$out"
want 4 && run tests python -m pytest -q -p no:cacheprovider
echo "done: $failed failed step(s); $out"
exit $failed
