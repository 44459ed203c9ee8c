#!/usr/bin/env bash
# The GPU run behind results/ablation.{md,json} and data/models/embedded-rgba: the whole ablation
# (configs/ablation.json: every variant at once, one process each, on one GPU), then its table.
# Needs the training images under $ALPHAVAE_SHARED_DATA/rgba-train (`alphavae data fetch`) and the LPIPS
# backbones in $ALPHAVAE_CACHE (`alphavae weights fetch`; `--half` copies are enough). LPIPS_NET=alex trains the
# perceptual term with LPIPS-Alex where VGG16's 29 MB cannot travel with the call (the tables say so).
# SEEDS="0 1 2" trains every variant once per seed (--seeds; without it, the config's "seeds"), each run in
# runs/ablation/<variant>/seed-<s> (runs/ablation/<variant> when the config has no seeds); STEPS=5000 overrides
# the configs' number of steps.
# VARIANTS="main no_gan" trains only those (--variants): one GPU call trains a few runs. Each scored run's small
# folder (score.json, pictures.png, run.json, log.jsonl; no model) comes back as $OUT/scored-runs.tgz: unpack it
# into results/ablation_runs/ and commit it; with RUNS=results/ablation_runs a later call (or this CPU, for the
# table alone) finds those runs scored and trains only the rest.
# Rerun after a stop: the same command resumes every unfinished run. Writes into $OUT (device tool) or ./gpu-out.
set -u
shopt -s nullglob
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
RESULTS=runs/ablation-results
RUNS=${RUNS:-runs/ablation}
opts=()
[ -n "${LPIPS_NET:-}" ] && opts+=(--lpips-net "$LPIPS_NET")
[ -n "${STEPS:-}" ] && opts+=(--steps "$STEPS")
[ -n "${SEEDS:-}" ] && { read -ra seeds <<< "$SEEDS"; opts+=(--seeds "${seeds[@]}"); }
[ -n "${VARIANTS:-}" ] && { read -ra variants <<< "$VARIANTS"; opts+=(--variants "${variants[@]}"); }
timeout "${ABLATION_TIMEOUT:-540}" python3 -m alphavae train --ablation configs/ablation.json --output "$RUNS" \
  --results "$RESULTS" --jobs "${JOBS:-7}" "${opts[@]}" || {
  echo "ablation did not finish"; logs=("$RUNS"/*.log "$RUNS"/*/*.log); [ ${#logs[@]} -gt 0 ] && tail -n 3 "${logs[@]}"; }
# Each run's log and run.json: ablation_logs/<variant>.jsonl, or <variant>.seed-<s>.jsonl for a seed's run.
mkdir -p "$RESULTS/ablation_logs"
for run in "$RUNS"/*/ "$RUNS"/*/seed-*/; do
  [ -f "$run/log.jsonl" ] || continue
  rel=${run#"$RUNS"/}; name=${rel%/}; name=${name//\//.}
  cp "$run/log.jsonl" "$RESULTS/ablation_logs/$name.jsonl"; cp "$run/run.json" "$RESULTS/ablation_logs/$name.run.json" 2>/dev/null
done
tar czf "$OUT/results.tgz" "$RESULTS" "$RUNS"/*.log "$RUNS"/*/*.log
scored=("$RUNS"/*/seed-*/score.json "$RUNS"/*/score.json)
if [ ${#scored[@]} -gt 0 ]; then
  dirs=(); for file in "${scored[@]}"; do folder=${file%/score.json}; dirs+=("${folder#"$RUNS"/}"); done
  tar czf "$OUT/scored-runs.tgz" -C "$RUNS" --exclude='model*' --exclude=checkpoints --exclude=.lock "${dirs[@]}"
fi
# The fp16 VAEs scripts/generation_gpu_run.sh trains generators on: the variant's run, or its first seed's (in name order).
for name in main naive_mse no_reference_kl; do
  for run in "$RUNS/$name" "$RUNS/$name"/seed-*; do
    [ -d "$run/model-fp16" ] && { tar cf "$OUT/$name-fp16.tar" -C "$run" model-fp16; break; }
  done
done
cat "$RESULTS/ablation.md" 2>/dev/null
