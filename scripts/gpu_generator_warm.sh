#!/usr/bin/env bash
# Train a generator further from its own weights (`alphavae generator train --init`: a warm start with a new
# optimiser, warm-up and cosine schedule), alone on one GPU, in one call: its model folder and log come back first
# ($OUT/model.tar, $OUT/log.jsonl), then it is scored against the held-out split (512 samples, FD-VGG16 / KID-VGG16:
# the VGG16 weights of `alphavae weights fetch` in $ALPHAVAE_CACHE) and checked for copies of its
# training images ($OUT/nearest.json, benchmarks/generator_nearest.py, 256 samples: on 1,200 images longer training
# moves the samples nearer the training set, stop 33). EVAL=0 skips both, NEAREST=0 the copy check. Each piece ends with a
# finished model, so a long training spreads over calls and sessions with nothing bigger than the model (28.8 MB for
# the shipped one) to carry: pass the last piece's model folder as INIT and a new RUN folder. The trainer takes the
# UNet shape from INIT; SHAPE adds shape options where INIT is gone (a --resume in a later session), e.g.
# SHAPE="--block-out-channels 96,192,256".
# Usage (repo root, data in $ALPHAVAE_SHARED_DATA/rgba-train):
#   OUT=/tmp/out INIT=embedded-generator STEPS=3000 bash scripts/gpu_generator_warm.sh
set -euo pipefail
OUT=${OUT:?set OUT to the folder for results}
INIT=${INIT:-embedded-generator}
STEPS=${STEPS:-3000}
RUN=${RUN:-runs/warm}
export TQDM_MININTERVAL=30 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
# --max-minutes leaves a checkpoint where the call would run out: the same command on the same warm machine resumes it
# shellcheck disable=SC2086  # SHAPE is options
python -m alphavae generator train --vae "${VAE:-embedded-rgba}" --init "$INIT" ${SHAPE:-} --output "$RUN" --steps "$STEPS" \
  --batch-size "${BATCH:-256}" --lr "${LR:-2e-4}" --compile true --checkpoint-every 100000 --max-minutes "${MINUTES:-8}" \
  --resume > "$OUT/train.log" 2>&1
tr '\r' '\n' < "$OUT/train.log" | grep -v '^\s*$' | tail -2 || true
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
[[ -d $RUN/model ]] || { echo "stopped before step $STEPS: run the same command again on this warm machine"; exit 0; }
tar -C "$RUN" -cf "$OUT/model.tar" model
[[ ${EVAL:-1} == 1 ]] || exit 0
python -m alphavae generator eval --model "warm=$RUN/model" --n 512 --json "$OUT/generation.json" --md "$OUT/generation.md" \
  --command "OUT=\$OUT INIT=$INIT STEPS=$STEPS bash scripts/gpu_generator_warm.sh"
[[ ${NEAREST:-1} == 1 ]] || exit 0
python benchmarks/generator_nearest.py --model "warm=$RUN/model" --n 256 --json "$OUT/nearest.json"
