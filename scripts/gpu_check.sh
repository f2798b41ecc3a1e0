#!/usr/bin/env bash
# One command for a GPU machine (docs/gpu.md): install carried wheels, run every GPU test, sanitise the
# marching-cubes kernel, run the GPU benchmark and the whole pipeline on the demo clip; everything lands in $OUT
# (default /tmp/gpu-check).
#
#   bash scripts/gpu_check.sh                   # from the repository root or anywhere
#   BENCH_ARGS="--compile" bash scripts/gpu_check.sh   # also time torch.compile (adds minutes)
#   GPU_TESTS=tests/test_gpu_kernels.py bash scripts/gpu_check.sh   # only some test files
#
# Needs: python3 with torch (CUDA), cupy, numpy, scipy, scikit-image, onnx, safetensors, pytest (the lent GPU
# machine has them all). Missing pure-Python packages travel as wheels in .whl/ (docs/gpu.md says how).
# Exit status: 0 when the tests and the benchmark ran without failure, 1 otherwise (the files say which).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The user cache (ONNX exports, engines) in a scratch folder: no platformdirs needed, nothing left behind.
export REALTIME_VRN_HOME="${REALTIME_VRN_HOME:-$(mktemp -d)/realtime-vrn-home}"

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout itself, not an installed copy

{
    date -u +%FT%TZ
    git rev-parse HEAD 2>/dev/null || echo "commit: unknown (no git)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c "import sys, numpy, torch, cupy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'cupy', cupy.__version__)"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

status=0
# Only the files that hold GPU tests: collecting the rest would import moderngl, mediapipe, ... which the lent
# machine does not have (two collection errors on 2026-12-06 turned an all-green run red).
GPU_TESTS="${GPU_TESTS:-$(grep -l -E '@pytest\.mark\.gpu|pytestmark = pytest\.mark\.gpu' tests/*.py | tr '\n' ' ')}"
echo "== GPU tests (pytest -m gpu on $GPU_TESTS): kernel == twin, torch CUDA FP16 parity, ..."
# shellcheck disable=SC2086  # GPU_TESTS is a list of files
"$PY" -m pytest -m gpu $GPU_TESTS -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" > "$OUT/gpu-tests.log" 2>&1 || status=1
tail -n 25 "$OUT/gpu-tests.log"

if command -v compute-sanitizer > /dev/null; then
    echo "== compute-sanitizer memcheck on the marching-cubes kernels (small grids)"
    compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$PY" -m pytest -m gpu tests/test_gpu_kernels.py -k small_grids -q -p no:cacheprovider \
        > "$OUT/sanitizer.log" 2>&1 || status=1
    tail -n 5 "$OUT/sanitizer.log"
fi

echo "== GPU benchmark -> $OUT/gpu-bench.json"
# shellcheck disable=SC2086  # BENCH_ARGS and GPU_TESTS are lists
"$PY" -m realtime_vrn bench gpu --json "$OUT/gpu-bench.json" ${BENCH_ARGS:-} > "$OUT/gpu-bench.log" 2>&1 || status=1
"$PY" - "$OUT/gpu-bench.json" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
mc, net = r.get("marching_cubes_gpu", {}), r.get("network_gpu", {})
def ms(section, key):
    value = section.get(key, {})
    return f"{value['median_ms']:.3f} ms median, {value['p95_ms']:.3f} ms p95" if "median_ms" in value else value
print("marching cubes 200x192x192:", ms(mc, "extract_device"), "| check:", mc.get("check", mc.get("error")))
print("  phases (ms):", mc.get("phase_median_ms"))
print("network FP16 CUDA graph:", ms(net, "fp16_channels_last_cuda_graph"), "| eager:", ms(net, "fp16_channels_last_eager"))
print("  parity FP16 vs FP32:", net.get("parity_fp16_vs_fp32", net.get("error")))
print("CPU references:", {k: v.get("median_ms") for k, v in r["cpu_references"].items() if isinstance(v, dict)})
sys.exit(1 if "error" in mc or "error" in net else 0)
EOF
echo "== whole pipeline on the demo clip: torch CUDA FP16 (CUDA graph) + CuPy marching cubes, pipelined loop"
echo "   (landmarks replayed from the recording next to the clip: this machine has no MediaPipe)"
CLIP=realtime_vrn/assets/clips/liveportrait-d10.mp4
"$PY" -m realtime_vrn bench --video "$CLIP" --landmarks "${CLIP%.mp4}-landmarks.npz" --backend torch \
    --device cuda --surface cuda --loop --max-frames "${PIPELINE_FRAMES:-3000}" --json "$OUT/pipeline.json" \
    > "$OUT/pipeline.log" 2>&1 || status=1
tail -n 15 "$OUT/pipeline.log"

echo "exit status $status; files in $OUT"
exit $status
