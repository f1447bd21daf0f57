#!/usr/bin/env bash
# One short GPU session: training speed, the GPU recipe timed end to end, and GPU inference (issue 14; the recipe
# is the field retrain issue 13 asks for). Run on the device machine from the repository's root, after
# `bench/gpu_pack.py` here and two calls there (bench/README.md, "A GPU session"):
#   call 1: carry [".gpu/data"], command `true`           (the pictures stay while the machine is warm)
#   call 2: carry [".gpu/site"], command `bash bench/gpu_session.sh`
# The work goes to $WORK; $OUT gets seven files (the device tool brings back at most 8, 16 MiB each, 64 MiB in all):
# session.log (each step's exit status and seconds), session.tar.gz (every step's log, the runs without their .pt
# files), model.onnx, model-boxcam.onnx, the two runs' checkpoints and gpu_inference.md. What it must show:
#   - train_speed: Lite0 and B0 stage-2 images/s, bf16 (about 4,800 and 4,500 were seen on one H100);
#   - fit: the recipe trainer/configs/gpu-lite0-field.yaml, start to exported ONNX, in under 120 s on one H100;
#   - fit_boxcam: the same data with the CAM box loss and the occlusion term (issue 17; trainer/reports/boxcam.md),
#     exported; bring $OUT home and measure it here (`trainer evaluate`, bench/pointing_game.py, occlusion_pointing.py);
#   - gpu_inference: onnxruntime CUDA (IO binding) at least 0.6x torch.compile on the same model (needs
#     onnxruntime-gpu, which travels apart: bench/README.md); without it, the torch rows only.
# DEVICE=cpu AMP=off EPOCHS=1 STEPS=2 (after `bench/gpu_pack.py --limit 30`) is a dry run of the same steps without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-session}
WORK=${WORK:-/tmp/brainscan-gpu-session}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
STEPS=${STEPS:-50}
AMP=${AMP:-bf16}
PY=${PYTHON:-python3}
RUN=lite0-224-field-gpu
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD/.gpu/site:$PWD/desktop:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

now() { date +%s.%N; }
step() {  # step NAME COMMAND...: its output to $WORK/NAME.log and the screen, its exit status and seconds to session.log
    local name=$1 started rc
    shift
    echo "== $(date -u +%H:%M:%S) $name: $*" | tee -a "$OUT/session.log"
    started=$(now)
    "$@" 2>&1 | tee "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $(awk -v a="$started" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s" | tee -a "$OUT/session.log"
}

step machine bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null;
  $PY -c 'import sys, torch, trainer, timm, onnx, onnxruntime as o; print(sys.version.split()[0], \"torch\", torch.__version__,
  \"cuda\", torch.cuda.is_available(), \"timm\", timm.__version__, \"onnx\", onnx.__version__, \"onnxruntime\",
  o.__version__, o.get_available_providers())'"
if [ ! -d .gpu/data/Training ] || [ ! -d .gpu/site ]; then
    echo "bench/gpu_session.sh: .gpu/data/Training and .gpu/site are needed (bench/gpu_pack.py, then the two carries)" \
        | tee -a "$OUT/session.log"
    exit 2
fi
if compgen -G ".gpu/ort/*.part-*" > /dev/null; then  # onnxruntime-gpu, carried in pieces (bench/gpu_pack.py)
    wheel=$(ls .gpu/ort/*.part-00); wheel=/tmp/$(basename "${wheel%.part-00}")
    cat $(ls .gpu/ort/*.part-* | sort) > "$wheel"
    step ort_gpu_install "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/ort-gpu "$wheel"
    export PYTHONPATH="/tmp/ort-gpu:$PYTHONPATH"
fi
step train_speed_lite0 "$PY" bench/train_speed.py --config gpu-lite0-field.yaml --device "$DEVICE" --amp "$AMP" \
    --steps "$STEPS" --json "$WORK/train_speed_lite0.json"
step train_speed_b0 "$PY" bench/train_speed.py --config gpu-b0-full.yaml --device "$DEVICE" --amp "$AMP" \
    --steps "$STEPS" --json "$WORK/train_speed_b0.json"
step fit "$PY" -m trainer fit --config trainer/configs/gpu-lite0-field.yaml --data .gpu/data/Training \
    --runs-dir "$WORK/runs" --device "$DEVICE" --amp "$AMP" --finetune-epochs "$EPOCHS" --overwrite --export "$OUT/model.onnx"
if [ -f .gpu/data/training-boxes.csv ]; then  # issue 17: the box-supervised fit with the occlusion term
    step fit_boxcam "$PY" -m trainer fit --config trainer/configs/lite0-224-boxcam.yaml --data .gpu/data/Training \
        --boxes .gpu/data/training-boxes.csv --box-occlusion-weight 0.5 --name lite0-224-boxcam-gpu \
        --runs-dir "$WORK/runs" --device "$DEVICE" --amp "$AMP" --batch-size 64 --finetune-epochs "$EPOCHS" \
        --overwrite --export "$OUT/model-boxcam.onnx"
fi
step gpu_inference "$PY" bench/gpu_inference.py --model "$OUT/model.onnx" --checkpoint "$WORK/runs/$RUN/checkpoint.pt" \
    --data .gpu/data/Training --batch 256 --out "$OUT/gpu_inference.md"
for checkpoint in "$WORK"/runs/*/checkpoint.pt; do  # home for exports with the mirror, grafts and refits (14 MiB each)
    [ -f "$checkpoint" ] && cp "$checkpoint" "$OUT/$(basename "$(dirname "$checkpoint")")-checkpoint.pt"
done
tar czf "$OUT/session.tar.gz" --exclude="*.pt" --exclude="*.npy" --exclude="*.npz" -C "$WORK" .
echo "== done: $OUT holds $(ls "$OUT" | tr '\n' ' ')" | tee -a "$OUT/session.log"
