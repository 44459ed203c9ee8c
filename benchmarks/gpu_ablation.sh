#!/usr/bin/env bash
# The GPU run of issue 5: a clean single-process throughput measurement, then the whole ablation
# (configs/ablation.json: every variant at once, one process each, on the one GPU), then its table.
# Needs the training images under $ALPHAVAE_SHARED_DATA/rgba-train. Writes into $OUT (device tool) or ./gpu-out.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/train_speed.py --config configs/main.json --steps 50 --warmup 10 --disc --json "$OUT/speed_main.json" > "$OUT/speed.log" 2>&1 \
  || tail -20 "$OUT/speed.log"
RESULTS=runs/ablation-results
timeout "${ABLATION_TIMEOUT:-450}" python3 -m alphavae train --ablation configs/ablation.json --output runs/ablation \
  --results "$RESULTS" --jobs 6 || { echo "ablation did not finish"; tail -5 runs/ablation/*.log; }
mkdir -p "$RESULTS/ablation_logs"
for run in runs/ablation/*/; do
  name=$(basename "$run"); cp "$run/log.jsonl" "$RESULTS/ablation_logs/$name.jsonl" 2>/dev/null; cp "$run/run.json" "$RESULTS/ablation_logs/$name.run.json" 2>/dev/null
done
cp "$OUT/speed_main.json" "$RESULTS/ablation_logs/" 2>/dev/null
tar czf "$OUT/results.tgz" "$RESULTS" runs/ablation/*.log
for name in main naive_mse no_reference_kl; do
  [ -d "runs/ablation/$name/model-fp16" ] && tar cf "$OUT/$name-fp16.tar" -C "runs/ablation/$name" model-fp16
done
cat "$RESULTS/ablation.md" 2>/dev/null
python3 -c "import json;d=json.load(open('$OUT/speed_main.json'));print({k:d[k] for k in ('device','step_time_ms','images_per_s','mfu','achieved_tflops','peak_memory_gib','flops_per_step')})"
