#!/usr/bin/env bash
# One GPU call that makes an RGBA VAE (issue 16): fine-tune $CONFIG (default `configs/main.json`; the shipped
# embedded-rgba is CONFIG=configs/free_alpha_overshoot.json) from today's `embedded` (5,000 steps with LPIPS-Alex:
# 7.1 min on an H200 with the eager step, 2 min 33 s on an H100 with the compiled one), then score it on the held-out
# split and an out-of-domain set on the GPU (`benchmarks/heldout_quality.py --device auto`: seconds there, half an hour on a 2-core CPU).
# Needs the training images under $ALPHAVAE_SHARED_DATA/rgba-train and LPIPS-Alex in $ALPHAVAE_CACHE (`alphavae
# weights fetch --half`); OOD=DIR (e.g. .gpu/ood-rgba from scripts/rebuild_ood_rgba.py) adds the out-of-domain set.
# LPIPS_NET=alex trains the perceptual term with LPIPS-Alex where VGG16's 29 MB cannot travel with the call.
# A stopped run resumes: run the same command again on the same (warm) machine.
#
# CONFIG=configs/free_alpha_overshoot.json RUN=runs/free trains another config the same way (default configs/main.json).
#
# Usage (repo root):  OUT=/tmp/out OOD=.gpu/ood-rgba LPIPS_NET=alex bash scripts/gpu_rgba_main.sh
# Back under $OUT: model-fp16/ (ship it as data/models/embedded-rgba/), log.jsonl, run.json, train.log,
# heldout_quality.json.
set -euo pipefail
OUT=${OUT:?set OUT to the folder for results}
RUN=${RUN:-runs/main}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
net=(); [[ -n ${LPIPS_NET:-} ]] && net=(--lpips-net "$LPIPS_NET")
ood=(); [[ -n ${OOD:-} ]] && ood=(--ood "$OOD")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
timeout "${TRAIN_TIMEOUT:-500}" python -m alphavae train --config "${CONFIG:-configs/main.json}" --output "$RUN" --resume "${net[@]}" \
  > "$OUT/train.log" 2>&1 || status=$?
tr '\r' '\n' < "$OUT/train.log" | grep -v '^\s*$' | tail -3
cp "$RUN/log.jsonl" "$RUN/run.json" "$OUT/" 2>/dev/null || true
if [[ $status != 0 || ! -d $RUN/model-fp16 ]]; then
  echo "training stopped (exit $status) before the end: run the same command again to resume"; exit 1
fi
cp -r "$RUN/model-fp16" "$OUT/"
python benchmarks/heldout_quality.py --rgba "$RUN/model-fp16" --device auto "${ood[@]}" --json "$OUT/heldout_quality.json"
