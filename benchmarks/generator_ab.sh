#!/usr/bin/env bash
# Generator variants side by side on one GPU, scored by what needs no VGG16 (so the call carries only the data):
# alpha statistics of N samples, and the per-channel spread of the sampled latents against the training latents.
# Each variant is `alphavae generator train` on `embedded-rgba` with the given extra options; its samples come
# back as $OUT/samples_<name>.tar (score FD-VGG16 on them afterwards, on any machine with the weights); with
# MODELS=1 its model folder and log as $OUT/model_<name>.tar. VAE=SPEC trains on another RGBA VAE's latents
# (default embedded-rgba; e.g. VAE=runs/free/model-fp16 from `CONFIG=configs/free_alpha_overshoot.json RUN=runs/free
# bash scripts/gpu_rgba_main.sh` on the same machine).
# Usage (repo root, data in $ALPHAVAE_SHARED_DATA/rgba-train):
#   OUT=/tmp/out STEPS=1500 N=128 bash benchmarks/generator_ab.sh "vae_lpb1=" "channel_lpb1=--latent-normalisation channel"
set -euo pipefail
OUT=${OUT:?set OUT to the folder for results}
STEPS=${STEPS:-1500}
N=${N:-128}
MINUTES=${MINUTES:-6}
RUNS=${RUNS:-runs/generator_ab}
export TQDM_MININTERVAL=30 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
names=() pids=()
for spec in "$@"; do
  name=${spec%%=*}; options=${spec#*=}; names+=("$name")
  # shellcheck disable=SC2086  # the options are words
  (python -m alphavae generator train --vae "${VAE:-embedded-rgba}" --output "$RUNS/$name" --steps "$STEPS" \
     --max-minutes "$MINUTES" --checkpoint-every 100000 $options \
   && python -m alphavae generate --model "$RUNS/$name/model" --n "$N" --seed 0 --output "$RUNS/$name/samples") \
    > "$OUT/ab_$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for name in "${names[@]}"; do echo "== $name"; tr '\r' '\n' < "$OUT/ab_$name.log" | grep -v '^\s*$' | tail -2; done
python - "$RUNS" "$OUT/generator_ab.json" "${names[@]}" <<'PY'
import json, sys
from pathlib import Path
import torch
from alphavae.generation.evaluate import alpha_statistics
from alphavae.generation.sampler import training_steps
from alphavae.imageio import load_rgba
runs, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
rows = {}
for name in names:
    files = sorted((runs / name / "samples").glob("*.png"))
    if not files:
        print(f"{name}: no samples"); continue
    stats = alpha_statistics(torch.stack([load_rgba(f) for f in files]))
    info = json.loads((runs / name / "model" / "generator.json").read_text())
    log = [json.loads(l) for l in (runs / name / "log.jsonl").read_text().splitlines()]
    rows[name] = {**{k: round(v, 4) for k, v in stats.items()}, "n": len(files), "steps": training_steps(info),
                  "minutes": info["train_minutes"], "parameters_m": round(info["n_parameters"] / 1e6, 2),
                  "final_loss_mean_of_last_5_logs": sum(e["loss"] for e in log[-5:]) / len(log[-5:]),
                  "device": info["device"], "options": info["config"]}
    print(f"{name:16s} soft {100 * stats['soft']:5.1f} %  transparent {100 * stats['transparent']:5.1f} %  "
          f"opaque {100 * stats['opaque']:5.1f} %  steps {training_steps(info)}  {info['train_minutes']:.1f} min  "
          f"{rows[name]['parameters_m']} M  loss {rows[name]['final_loss_mean_of_last_5_logs']:.4f}")
out.write_text(json.dumps(rows, indent=1) + "\n")
PY
for name in "${names[@]}"; do
  [[ -d $RUNS/$name/samples ]] && tar -C "$RUNS/$name" -cf "$OUT/samples_$name.tar" samples
  [[ -n ${MODELS:-} && -d $RUNS/$name/model ]] && tar -C "$RUNS/$name" -cf "$OUT/model_$name.tar" model log.jsonl
done
exit $status
