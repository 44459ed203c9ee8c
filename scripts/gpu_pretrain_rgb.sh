#!/usr/bin/env bash
# The one command of a GPU call that pretrains the stronger embedded RGB VAE on the RGB corpus (issue 16).
# Installs nothing: the caller sets PYTHONPATH and ALPHAVAE_CACHE (holding alexnet.safetensors, from
# `alphavae weights fetch`), and the corpus is at $PWD/.gpu/rgb-corpus (with its manifest.csv: the held-out
# split keeps a photograph's views and the composites over it together).
#
# The recipe: SD's family at 3.9 M parameters (7.9 MB of fp16 weights): block_out_channels 32 64 128 128 (the
# shipped embedded size: every later run, the RGBA fine-tunes and the ablation, stays fast), 1 layer per block,
# 8 norm groups, a 16-channel latent (FLUX-style); batch 64 of 128-px crops at scales
# 1, 0.7, 0.5 with colour augmentation; L1 + LPIPS-Alex (weight 1, SD's broadcast) + KL 1e-6; AdamW lr 5e-4,
# 200 warm-up steps, cosine decay over the steps that fit in MINUTES. The PatchGAN term is off (ADV_WEIGHT=0):
# a run of a few thousand steps is far from where SD switches it on, and it trades PSNR for sharpness;
# ADV_WEIGHT=0.5 DISC_START=N turns it on from step N.
#
# The step count: a 150-step probe of the same recipe measures steps/s on this machine (between its log lines at
# steps 50 and 150: timed over all 150 steps, CUDA start-up made the first run plan 6,228 steps for a rate that
# did 19.5 steps/s, and it ended after 5.3 of 8 minutes), and STEPS is what fits in MINUTES at that rate less 5 % (kept in $RUN/steps.txt so a --resume keeps the schedule). The run stops by
# time at MINUTES + 0.5 at the latest; if it does, the newest checkpoint's weights come back as partial-vae/.
#
# Usage (repo root):  OUT=/tmp/out MINUTES=8 bash scripts/gpu_pretrain_rgb.sh
# Back under $OUT: embedded-vae/{config.json,diffusion_pytorch_model.safetensors}, pretrain_summary.json,
# log.jsonl, train.log, probe.log.
set -euo pipefail
OUT=${OUT:?set OUT to the folder for results}
MINUTES=${MINUTES:-8}
DATA=${DATA:-$PWD/.gpu/rgb-corpus}
RUN=${RUN:-$PWD/.gpu/runs/rgb-vae}
CROP=${CROP:-128}
ADV_WEIGHT=${ADV_WEIGHT:-0}
DISC_START=${DISC_START:-2000}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
[[ -f $DATA/manifest.csv ]] || { echo "$DATA/manifest.csv missing: the corpus must come with its manifest"; exit 1; }
recipe=(--photos "$DATA" --block-out-channels 32 64 128 128 --layers-per-block 1 --norm-num-groups 8
        --latent-channels 16 --batch-size 64 --crop "$CROP" --scales 1.0 0.7 0.5 --lr 5e-4 --kl-weight 1e-6
        --lpips-net alex --lpips-weight 1.0 --adversarial-weight "$ADV_WEIGHT" --disc-start "$DISC_START")
mkdir -p "$RUN"
if [[ ! -f $RUN/steps.txt ]]; then
  python -m alphavae pretrain "${recipe[@]}" --output "$RUN-probe" --steps 150 --warmup 10 --log-every 50 \
    --checkpoint-every 1000 > "$OUT/probe.log" 2>&1
  # the rate between the probe's first and last log lines: its first steps (CUDA start-up) are left out
  python -c "import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; a, b = rows[0], rows[-1]; \
print(int(0.95 * float(sys.argv[2]) * 60 * (b['step'] - a['step']) / (b['seconds'] - a['seconds'])))" \
    "$RUN-probe/log.jsonl" "$MINUTES" > "$RUN/steps.txt"
fi
STEPS=$(cat "$RUN/steps.txt")
echo "steps: $STEPS"
python -m alphavae pretrain "${recipe[@]}" --output "$RUN" --steps "$STEPS" --warmup 200 --log-every 50 \
  --checkpoint-every 1000 --max-minutes "$(python -c "print($MINUTES + 0.5)")" --resume 2>&1 | tee "$OUT/train.log"
[[ ! -f $RUN/log.jsonl ]] || cp "$RUN/log.jsonl" "$OUT/"
if [[ -d $RUN/embedded-vae ]]; then
  cp -r "$RUN/embedded-vae" "$RUN/pretrain_summary.json" "$OUT/"
else
  python -c "import sys, torch; from alphavae.training.checkpoint import latest_checkpoint, load_checkpoint; \
from alphavae.vae.pretrain import PretrainConfig, build_vae, save_fp16; \
shared, _ = load_checkpoint(latest_checkpoint(sys.argv[1])); c = dict(shared['config']); \
vae = build_vae(PretrainConfig(**c)); vae.load_state_dict(shared['model']); save_fp16(vae, sys.argv[2])" \
    "$RUN/checkpoints" "$OUT/partial-vae"
  echo "stopped by time: partial-vae/ holds the newest checkpoint's weights (no scaling_factor); --resume continues"
fi
