#!/usr/bin/env bash
# The GPU benchmarks, in about 5 minutes on one CUDA machine without network access (the last
# step, torch.compile, is cut off after 120 s).
#
#   bash benchmarks/gpu.sh                     # from the repository root (or anywhere)
#
# Needs python3 with torch (CUDA), timm, numpy, opencv, pandas, scikit-learn, safetensors, pluggy,
# click, huggingface_hub, tqdm, threadpoolctl and onnx. It installs cxrzoo and its four model
# plugins from this checkout without the network, because the plugins are found through their
# entry points: editable with pip; else with pip into /tmp/cxrzoo-site on PYTHONPATH; else the
# source tree on PYTHONPATH with the entry points written out by hand. It generates all the data
# it needs, then runs, each step bounded by `timeout`:
#
#   1. bench_train.py --device cuda: every model and the ResNet-50 baseline, 224 px, batch 64,
#      bf16 autocast, channels_last, 30 timed steps, the cached input pipeline alone and feeding
#      each model;
#   2. bench_loader.py --device cuda: 1500 PNGs of 512 px, cached vs decoded every epoch, at 224;
#   3. bench_cache.py: 1500 PNGs of 1024 px, build_cache with one worker per CPU (the
#      single-thread steps on the first 300);
#   4. bench_train.py --device cuda --compile, last, cut off after 120 s: the models it
#      finished are in its results file.
#
# Results: benchmarks/results/gpu/*.json (with the GPU's name), also copied to $OUT when set.
# Environment: PYTHON (default python3), OUT, RESULTS (default benchmarks/results/gpu),
# BENCH_DEVICE (default cuda), BENCH_QUICK=1 (every step with --quick: a smoke run of this script,
# e.g. BENCH_DEVICE=cpu on a machine without a GPU), SKIP_INSTALL=1 (cxrzoo already installed),
# INSTALL=editable|target|path (only that way of installing), COMPILE_LIMIT (seconds, default 120).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-python3}
DEVICE=${BENCH_DEVICE:-cuda}
RESULTS=${RESULTS:-benchmarks/results/gpu}
QUICK=${BENCH_QUICK:-0}
COMPILE_LIMIT=${COMPILE_LIMIT:-120}
PLUGINS=(plugins/cxrzoo-advanced-resnet plugins/cxrzoo-chest-attention plugins/cxrzoo-rare-disease plugins/cxrzoo-ensemble)
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
START=$SECONDS
FAILED=()

step() { echo; echo "== $* (at $((SECONDS - START)) s)"; }

# bounded NAME LIMIT_S COMMAND...: runs COMMAND for at most LIMIT_S seconds; a failure is noted
# and the next step still runs.
bounded() {
    local name=$1 limit=$2 t=$SECONDS rc=0
    shift 2
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    if ((rc == 0)); then
        echo "   $name: done in $((SECONDS - t)) s"
    elif ((rc == 124 || rc == 137)); then
        echo "   $name: stopped after ${limit} s (timeout)"
        FAILED+=("$name (timeout)")
    else
        echo "   $name: FAILED with exit $rc after $((SECONDS - t)) s"
        FAILED+=("$name (exit $rc)")
    fi
}

models_found() {
    "$PY" - <<'EOF'
import cxrzoo

need = {"advanced_resnet", "chest_xray_attention", "rare_disease", "ensemble"}
found = set(cxrzoo.list_models())
print("   models:", ", ".join(sorted(found)))
raise SystemExit(0 if need <= found else f"   missing model plugins: {sorted(need - found)}")
EOF
}

# The last way in: the source folders on PYTHONPATH and, in /tmp/cxrzoo-site, a minimal
# .dist-info per package holding its entry points, which is all importlib.metadata needs to find
# the plugins. Needs neither pip nor setuptools.
install_on_path() {
    local site=/tmp/cxrzoo-site paths=$PWD p
    rm -rf "$site" && mkdir -p "$site"
    "$PY" - "$site" . "${PLUGINS[@]}" <<'PYTHON'
import sys
import tomllib
from pathlib import Path

site = Path(sys.argv[1])
for folder in map(Path, sys.argv[2:]):
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
PYTHON
    for p in "${PLUGINS[@]}"; do paths+=:$PWD/$p; done
    export PYTHONPATH=$paths:$site${PYTHONPATH:+:$PYTHONPATH}
}

# INSTALL=editable|target|path forces one way; by default each is tried in turn.
install() {
    local how=${INSTALL:-any} pip=("$PY" -m pip install --no-deps --no-build-isolation --no-index -q)
    local editable=(-e .) p
    for p in "${PLUGINS[@]}"; do editable+=(-e "$p"); done
    if [[ $how == any || $how == editable ]]; then
        if timeout 180 "${pip[@]}" "${editable[@]}" && models_found; then
            echo "   installed editable"
            return
        fi
        echo "   the editable install was refused or is incomplete"
    fi
    if [[ $how == any || $how == target ]]; then
        rm -rf /tmp/cxrzoo-site
        if timeout 180 "${pip[@]}" --target /tmp/cxrzoo-site . "${PLUGINS[@]}"; then
            export PYTHONPATH=/tmp/cxrzoo-site${PYTHONPATH:+:$PYTHONPATH}
            if models_found; then
                echo "   installed into /tmp/cxrzoo-site"
                return
            fi
        fi
        echo "   pip could not install into /tmp/cxrzoo-site (setuptools too old for pyproject.toml?)"
    fi
    install_on_path
    models_found
    echo "   running from the source tree (PYTHONPATH), entry points in /tmp/cxrzoo-site"
}

step "Python $("$PY" -c 'import sys; print(sys.version.split()[0])') ($PY)"
if [[ ${SKIP_INSTALL:-0} == 1 ]]; then
    models_found
else
    step "Installing cxrzoo and its plugins (no network)"
    install
fi

step "nvidia-smi"
nvidia-smi || echo "   (nvidia-smi is not available)"

mkdir -p "$RESULTS"
if [[ $QUICK == 1 ]]; then
    TRAIN=(--quick) LOADER=(--quick) CACHE=(--quick)
else
    TRAIN=(--image-size 224 --batch-size 64 --warmup 5 --steps 30)
    LOADER=(--images 1500 --source-size 512 --image-size 224 --batch-size 64)
    CACHE=(--images 1500 --size 1024 --single-images 300 --repeat 1)
fi
WORKERS=$("$PY" -c 'import os; print(os.cpu_count())')

step "1. Training steps per model vs ResNet-50 ($DEVICE)"
bounded train 240 "$PY" benchmarks/bench_train.py --device "$DEVICE" "${TRAIN[@]}" --out "$RESULTS/train.json"

step "2. Input pipeline: cache + BatchLoader vs decoding every epoch ($DEVICE)"
bounded loader 150 "$PY" benchmarks/bench_loader.py --device "$DEVICE" "${LOADER[@]}" --workers "$WORKERS" \
    --out "$RESULTS/loader.json"

step "3. Cache build, $WORKERS workers"
bounded cache 150 "$PY" benchmarks/bench_cache.py "${CACHE[@]}" --workers "$WORKERS" --out "$RESULTS/cache.json"

step "4. Training steps with torch.compile (cut off after ${COMPILE_LIMIT} s)"
bounded train_compile "$COMPILE_LIMIT" "$PY" benchmarks/bench_train.py --device "$DEVICE" "${TRAIN[@]}" --compile \
    --out "$RESULTS/train_compile.json"

if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp "$RESULTS"/*.json "$OUT"/ 2>/dev/null || true
    echo "   results copied to $OUT"
fi
step "Done"
ls -l "$RESULTS"
if ((${#FAILED[@]})); then
    echo "   not finished: ${FAILED[*]}"
fi
# The compile step may be cut off by design; any other step failing fails the script.
for f in "${FAILED[@]+"${FAILED[@]}"}"; do
    [[ $f == train_compile* ]] || exit 1
done
