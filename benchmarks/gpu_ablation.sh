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
# folder (score.json, run.json, log.jsonl, and pictures.png for the first seed a call scores; no model, no TensorBoard
# events) comes back as $OUT/scored-runs.tgz: unpack its new runs into benchmarks/results/ablation_runs/ and commit them,
#   tar xzf scored-runs.tgz -C benchmarks/results/ablation_runs --skip-old-files --exclude='*seed-[1-9]*/pictures.png'
# (the committed runs stay as they are; the table's strips are seed 0's, so later seeds' 0.2-MB pictures stay out of the
# tree every call carries). Every call
# first copies the committed runs (SCORED, that folder by default) into RUNS, where they count as scored: only the
# rest is trained. RUNS (runs/ablation) is git-ignored, so an unfinished run's checkpoints stay on a warm machine
# between calls, which re-copy the tracked tree. On this CPU, RUNS=benchmarks/results/ablation_runs makes the table
# alone once every run is scored (about 15 minutes on 2 cores for the reference rows and gradient shares, so without a GPU
# ABLATION_TIMEOUT defaults to 7200 s instead of 480).
# When ABLATION_TIMEOUT stops the training, the runs that finished (seed-<s> folders) are scored, seed by seed,
# until CALL_LIMIT seconds (570: the device's 600 less the packing) from the script's start, so a call cut short loses only its
# unfinished runs; re-run the same command on the same warm machine to resume those.
# MPS=1 starts NVIDIA's multi-process service first, so that the JOBS processes can share the GPU's SMs (stop 24: four
# runs at once under MPS trained 468 images/s together on one H100; MPS off was not measured beside it).
# Rerun after a stop: the same command resumes every unfinished run. Writes into $OUT (device tool) or ./gpu-out.
set -u
shopt -s nullglob
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"; timeout_s=480
else
  echo "no GPU: the table alone, on this CPU" | tee "$OUT/gpu.txt"; timeout_s=7200  # RUNS=<scored runs> (see above)
fi
RESULTS=runs/ablation-results
RUNS=${RUNS:-runs/ablation}
SCORED=${SCORED:-benchmarks/results/ablation_runs}
if [ "$(realpath -m "$SCORED")" != "$(realpath -m "$RUNS")" ]; then
  for run in "$SCORED"/*/seed-*; do
    dest=$RUNS/${run#"$SCORED"/}; [ -e "$dest" ] || { mkdir -p "${dest%/*}"; cp -r "$run" "$dest"; }
  done
fi
common=()  # what every ablation command of this call is given; then which runs
[ -n "${LPIPS_NET:-}" ] && common+=(--lpips-net "$LPIPS_NET")
[ -n "${STEPS:-}" ] && common+=(--steps "$STEPS")
picks=()
[ -n "${SEEDS:-}" ] && { read -ra seeds <<< "$SEEDS"; picks+=(--seeds "${seeds[@]}"); }
[ -n "${VARIANTS:-}" ] && { read -ra variants <<< "$VARIANTS"; picks+=(--variants "${variants[@]}"); }
if [ "${MPS:-0}" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log; mkdir -p /tmp/mps /tmp/mps-log
  [ -p /tmp/mps/control ] || nvidia-cuda-mps-control -d  # a warm machine may have it running already
  if [ -p /tmp/mps/control ] && python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS off: it did not start"
  fi
fi
ablation=(python3 -m alphavae train --ablation configs/ablation.json --output "$RUNS" --results "$RESULTS" "${common[@]}")
complete=1
timeout "${ABLATION_TIMEOUT:-$timeout_s}" "${ablation[@]}" --jobs "${JOBS:-7}" "${picks[@]}" || {
  complete=0; echo "ablation did not finish: scoring the runs that did"; logs=("$RUNS"/*.log "$RUNS"/*/*.log)
  [ ${#logs[@]} -gt 0 ] && tail -n 3 "${logs[@]}"
  finished=("$RUNS"/*/seed-*/model "$RUNS"/*/seed-*/score.json)
  for seed in $(printf '%s\n' "${finished[@]}" | sed -n 's|.*/seed-\([0-9]*\)/.*|\1|p' | sort -un); do
    left=$(( ${CALL_LIMIT:-570} - SECONDS )); [ "$left" -gt 20 ] || { echo "no time left to score seed $seed"; break; }
    done_variants=()
    for run in "$RUNS"/*/seed-"$seed"; do
      if [ -d "$run/model" ] || [ -f "$run/score.json" ]; then v=${run%/seed-*}; done_variants+=("${v##*/}"); fi
    done
    timeout "$left" "${ablation[@]}" --seeds "$seed" --variants "${done_variants[@]}"
  done; }
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
  tar czf "$OUT/scored-runs.tgz" -C "$RUNS" --exclude='model*' --exclude=checkpoints --exclude=tensorboard --exclude=.lock "${dirs[@]}"
fi
# The fp16 VAEs scripts/generation_gpu_run.sh trains generators on: the variant's run, or its first seed's (in name order).
for name in main naive_mse no_reference_kl; do
  for run in "$RUNS/$name" "$RUNS/$name"/seed-*; do
    [ -d "$run/model-fp16" ] && { tar cf "$OUT/$name-fp16.tar" -C "$run" model-fp16; break; }
  done
done
if [ "$complete" = 1 ]; then cat "$RESULTS/ablation.md" 2>/dev/null
else echo "(no table: the call stopped early, and each seed's scoring wrote only its own finished runs)"; fi
