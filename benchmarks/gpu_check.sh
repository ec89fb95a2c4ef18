#!/usr/bin/env bash
# GPU check of the top-k sparse attention kernels, in one run: build the plugin library for this machine's GPU,
# run the GPU tests (the current kernel, then the tiled one), run the benchmark. Every step runs whatever the
# earlier ones did, each under a timeout (at most 7.2 minutes in all; about 4 on an H100); the exit codes are listed
# at the end, and the script exits non-zero if any step failed.
#
#   bash benchmarks/gpu_check.sh                      # from anywhere; works in the repository it lives in
#
# Needs a CUDA GPU, nvcc, cmake, torch with CUDA, pytest (no TensorRT: the library is built from TensorRT's public
# headers). A machine without internet cannot fetch those headers: copy them into the working tree first, e.g.
#   mkdir -p build && cp -r ~/.cache/rgbir/kernel-lens-2.0.1/kernel_lens/include/tensorrt build/trt-include
# (build/ is git-ignored: carry it to the device) or to shared/trt-include/. RGBIR_TENSORRT_INCLUDE overrides both.
# Pure-Python packages the machine lacks (rgbir.models needs PyYAML, the command line rich) can come along in
# build/pydeps, used only when the interpreter cannot import them itself:
#   mkdir -p build/pydeps && cp -r .venv/lib/python3*/site-packages/{yaml,rich,pygments,markdown_it,mdurl} build/pydeps/
# PYTHON picks the interpreter (default: python3, else python); OUT, when set, receives the log and JUnit files.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" # rgbir from this tree, installed or not

if [ -z "${RGBIR_TENSORRT_INCLUDE:-}" ]; then
    for dir in "$ROOT/shared/trt-include" "$ROOT/build/trt-include"; do
        if [ -f "$dir/NvInferRuntime.h" ]; then
            export RGBIR_TENSORRT_INCLUDE=$dir
            break
        fi
    done
fi
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
"$PYTHON" -c "import yaml, rich" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$ROOT/build/pydeps"
WORK=${TMPDIR:-/tmp}/rgbir-gpu-check
LIBRARY=$WORK/lib/librgbir_plugins.so
mkdir -p "$WORK"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi

HAVE_GPU=0
nvidia-smi -L 2>/dev/null | grep -q "^GPU" && HAVE_GPU=1
export ROOT PYTHON LIBRARY HAVE_GPU

NAMES=()
CODES=()

# step NAME SECONDS COMMAND...: a header, the command (a program or an exported function) under a timeout, its exit
# code remembered; never stops the script.
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    printf '\n==================== %s ====================\n' "$name"
    timeout --kill-after=10 "$limit" bash -c '"$@"' bash "$@"
    rc=$?
    [ "$rc" -eq 124 ] && echo "(timed out after ${limit}s)"
    printf -- '---- %s: exit %d after %ds\n' "$name" "$rc" $((SECONDS - start))
    NAMES+=("$name")
    CODES+=("$rc")
}

environment() {
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader \
        || echo "no CUDA GPU: the build is checked for sm_90, GPU tests and benchmark are skipped"
    nvcc --version | tail -n 2
    cmake --version | head -n 1
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())"
    "$PYTHON" -c "import importlib.util as u; print('modules:', *(f'{m}={bool(u.find_spec(m))}' for m in
        ('numpy', 'pytest', 'yaml', 'rich', 'cuda.bindings')))"
    echo "TensorRT headers: ${RGBIR_TENSORRT_INCLUDE:-none found (see the top of this script)}"
    [ -f "${RGBIR_TENSORRT_INCLUDE:-/nonexistent}/NvInferRuntime.h" ]
}

# the library for this GPU (without one: for sm_90, which checks the build all the same)
build() {
    local arch=native
    [ "$HAVE_GPU" = 1 ] || arch=90
    "$PYTHON" -m rgbir plugins compile --arch "$arch" --output-dir "$(dirname "$LIBRARY")"
}

# gpu_tests EXPRESSION NAME: the GPU tests of tests/test_plugins.py matching -k EXPRESSION (they skip without a GPU)
gpu_tests() {
    local junit=()
    [ -n "${OUT:-}" ] && junit=("--junitxml=$OUT/$2.xml")
    RGBIR_GPU_TEST_LIBRARY=$LIBRARY "$PYTHON" -m pytest -q -m gpu -k "$1" -p no:cacheprovider --durations=8 \
        ${junit[@]+"${junit[@]}"} "$ROOT/tests/test_plugins.py"
}

# the fused kernel as a PyTorch op inside a model, and the PyTorch backend's fast path (fp16, channels-last, the
# kernel, a CUDA graph) against fp32 eager, through the same library
op_tests() {
    local junit=()
    [ -n "${OUT:-}" ] && junit=("--junitxml=$OUT/gpu_tests_op.xml")
    RGBIR_PLUGIN_LIBRARY=$LIBRARY "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider ${junit[@]+"${junit[@]}"} \
        "$ROOT/tests/test_attention_kernel.py" "$ROOT/tests/test_torch_backend.py"
}

benchmark() {
    if [ "$HAVE_GPU" != 1 ]; then
        echo "skipped: no CUDA GPU"
        return 0
    fi
    "$PYTHON" "$ROOT/benchmarks/topk_attention.py" --library "$LIBRARY"
}
# issue 14: the MSC model by attention implementation, and the pipeline vs the bare PyTorch CUDA backend
model_benchmark() {
    [ "$HAVE_GPU" = 1 ] || { echo "skipped: no CUDA GPU"; return 0; }
    RGBIR_PLUGIN_LIBRARY=$LIBRARY "$PYTHON" "$ROOT/benchmarks/msc_model.py" --repeats 15
}

pipeline_benchmark() {
    [ "$HAVE_GPU" = 1 ] || { echo "skipped: no CUDA GPU"; return 0; }
    local weights
    weights=$(ls "$ROOT"/rgbir/assets/*.safetensors | head -n 1)
    RGBIR_PLUGIN_LIBRARY=$LIBRARY "$PYTHON" "$ROOT/benchmarks/pipeline.py" --model "$weights" --device cuda \
        --half --cuda-graph --imgsz 640 640 --pairs 60 --streams 1 2 "$@"
}
export -f environment build gpu_tests op_tests benchmark model_benchmark pipeline_benchmark

step "environment" 20 environment
step "build: rgbir plugins compile" 60 build
step "GPU tests: current kernel, letterbox" 70 gpu_tests "not tiled" gpu_tests_current
step "GPU tests: tiled kernel" 80 gpu_tests "tiled" gpu_tests_tiled
step "GPU tests: the PyTorch op and backend" 40 op_tests
step "benchmark: GPU time by CUDA-graph replay" 50 benchmark
step "benchmark: MSC model by attention (issue 14)" 40 model_benchmark
step "benchmark: pipeline vs bare PyTorch CUDA (issue 14)" 40 pipeline_benchmark
step "benchmark: the same with the GPU letterbox" 30 pipeline_benchmark --gpu-preprocess

printf '\n==================== summary ====================\n'
failed=0
for i in "${!NAMES[@]}"; do
    printf '%-45s exit %s\n' "${NAMES[$i]}" "${CODES[$i]}"
    [ "${CODES[$i]}" -eq 0 ] || failed=1
done
exit "$failed"
