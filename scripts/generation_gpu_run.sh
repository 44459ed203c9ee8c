#!/usr/bin/env bash
# The generation table with the ablation's three VAEs (notebook 05): the GPU run behind results/generation.{md,json}
# until stop 23 (the shipped pair of stop 23 came from benchmarks/generator_ab.sh; see its model card).
# Trains three generators at once on one GPU — on the latents of the main RGBA VAE (embedded-rgba) and of
# the two ablation VAEs (naive-MSE reconstruction, no reference KL) — then samples and scores all three
# against the held-out split (FD-VGG16 / KID-VGG16: needs `alphavae weights fetch`). The three VAEs are the
# ablation's (benchmarks/gpu_ablation.sh): $VARIANTS/{main,naive_mse,no_reference_kl}/model-fp16.
# Usage (repo root, data in $ALPHAVAE_SHARED_DATA/rgba-train):
#   OUT=/tmp/out STEPS=3000 MINUTES=6.5 bash scripts/generation_gpu_run.sh
# EVAL=0 stops after training: where LPIPS-VGG's 29 MB cannot travel with the VAEs and the training images, train in
# one call and run the same command again on the same warm machine, with the weights and without the three VAEs'
# folders in the call (a finished run resumes as done), to sample and score. The UNets are compiled (--compile true),
# as the shipped generator's was.
set -euo pipefail
OUT=${OUT:?set OUT to the folder for results}
STEPS=${STEPS:-3000}
MINUTES=${MINUTES:-6}
N_EVAL=${N_EVAL:-512}
RUNS=${RUNS:-runs/generation}
VARIANTS=${VARIANTS:-runs/ablation}
declare -A VAES=([main]=$VARIANTS/main/model-fp16 [naive_mse]=$VARIANTS/naive_mse/model-fp16 [no_reference_kl]=$VARIANTS/no_reference_kl/model-fp16)
mkdir -p "$(dirname "$RUNS")"
export TQDM_MININTERVAL=20 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
pids=()
for name in main naive_mse no_reference_kl; do
  vae=${VAES[$name]}
  if [[ ! -f $vae/config.json ]]; then echo "skipping $name: $vae missing"; continue; fi
  python -m alphavae generator train --vae "$vae" --output "$RUNS/$name" --steps "$STEPS" \
    --max-minutes "$MINUTES" --resume --compile true > "$OUT/train_$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for name in main naive_mse no_reference_kl; do
  [[ -f $OUT/train_$name.log ]] && { echo "== $name"; tr '\r' '\n' < "$OUT/train_$name.log" | grep -v '^\s*$' | tail -3; }
done
[[ $status == 0 ]] || { echo "a training run failed"; exit 1; }
[[ ${EVAL:-1} == 1 ]] || { echo "EVAL=0: trained; run again with EVAL=1 to score"; exit 0; }
models=(--model "main=$RUNS/main/model")
for name in naive_mse no_reference_kl; do
  [[ -d $RUNS/$name/model ]] && models+=(--model "$name=$RUNS/$name/model")
done
python -m alphavae generator eval "${models[@]}" --n "$N_EVAL" --json "$OUT/generation.json" --md "$OUT/generation.md" \
  --command "OUT=\$OUT STEPS=$STEPS MINUTES=$MINUTES bash scripts/generation_gpu_run.sh" \
  --note "VAEs: main, naive_mse and no_reference_kl of notebook 04's ablation (results/ablation.md, benchmarks/gpu_ablation.sh); main is trained as configs/main.json says (the paper's terms; the shipped embedded-rgba also holds the alpha overshoot); none of the three is shipped."
tar -C "$RUNS/main" -cf "$OUT/model.tar" model
