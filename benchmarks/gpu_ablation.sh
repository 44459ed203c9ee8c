#!/usr/bin/env bash
# The GPU run behind results/ablation.{md,json} and data/models/embedded-rgba: the whole ablation
# (configs/ablation.json: every variant at once, one process each, on one GPU), then its table.
# Needs the training images under $ALPHAVAE_SHARED_DATA/rgba-train (`alphavae data fetch`) and the LPIPS
# backbones in $ALPHAVAE_CACHE (`alphavae weights fetch`; `--half` copies are enough). LPIPS_NET=alex trains the
# perceptual term with LPIPS-Alex where VGG16's 29 MB cannot travel with the call (the tables say so).
# Rerun after a stop: the same command resumes every unfinished variant. Writes into $OUT (device tool) or ./gpu-out.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
RESULTS=runs/ablation-results
net=(); [ -n "${LPIPS_NET:-}" ] && net=(--lpips-net "$LPIPS_NET")
timeout "${ABLATION_TIMEOUT:-540}" python3 -m alphavae train --ablation configs/ablation.json --output runs/ablation \
  --results "$RESULTS" --jobs "${JOBS:-7}" "${net[@]}" || { echo "ablation did not finish"; tail -3 runs/ablation/*.log; }
mkdir -p "$RESULTS/ablation_logs"
for run in runs/ablation/*/; do
  name=$(basename "$run"); cp "$run/log.jsonl" "$RESULTS/ablation_logs/$name.jsonl" 2>/dev/null; cp "$run/run.json" "$RESULTS/ablation_logs/$name.run.json" 2>/dev/null
done
tar czf "$OUT/results.tgz" "$RESULTS" runs/ablation/*.log
for name in main naive_mse no_reference_kl; do
  [ -d "runs/ablation/$name/model-fp16" ] && tar cf "$OUT/$name-fp16.tar" -C "runs/ablation/$name" model-fp16
done
cat "$RESULTS/ablation.md" 2>/dev/null
