#!/usr/bin/env bash
# Speed calibration on the GPU device before the ablation: one clean process, then 6 at once (as the ablation
# runs them), each timing the trainer's step (configs/main.json, discriminator on) on the embedded model at batch 8.
# ROW: the benchmark row (default eager:embedded:8; optimised:embedded:8 compiles first, ~2 min).
set -u
ROW=${ROW:-eager:embedded:8}
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv
python3 benchmarks/train_speed.py --rows "$ROW" --steps 50 --json $OUT/single.json > $OUT/single.log 2>&1 || tail -20 $OUT/single.log
for i in 1 2 3 4 5 6; do
  python3 benchmarks/train_speed.py --rows "$ROW" --steps 150 --json $OUT/conc$i.json > $OUT/conc$i.log 2>&1 &
done
wait
python3 -c "
import json;t=[json.load(open(f'$OUT/conc{i}.json'))[0]['images_per_s'] for i in range(1,7)];print('concurrent img/s',[round(x,1) for x in t],'aggregate',round(sum(t),1))"
