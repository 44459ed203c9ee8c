#!/usr/bin/env bash
# Speed calibration on the GPU device before the ablation: one clean process, then 6 at once (as the ablation
# runs them), each timing training steps of configs/main.json (discriminator on). VAE: $1 (a save_pretrained folder).
set -u
VAE=${1:-embedded}
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv
python3 benchmarks/train_speed.py --config configs/main.json --set vae="\"$VAE\"" --steps 50 --warmup 10 --disc --json $OUT/single.json > $OUT/single.log 2>&1 || tail -20 $OUT/single.log
python3 -c "import json;d=json.load(open('$OUT/single.json'));print('single', {k:d[k] for k in ('step_time_ms','images_per_s','mfu','peak_memory_gib','flops_per_step')})"
for i in 1 2 3 4 5 6; do
  python3 benchmarks/train_speed.py --config configs/main.json --set vae="\"$VAE\"" --steps 150 --warmup 10 --disc --json $OUT/conc$i.json > $OUT/conc$i.log 2>&1 &
done
wait
python3 -c "
import json;t=[json.load(open(f'$OUT/conc{i}.json'))['step_time_ms'] for i in range(1,7)];print('concurrent step ms',[round(x,1) for x in t],'aggregate img/s',round(sum(8000/x for x in t),1))"
