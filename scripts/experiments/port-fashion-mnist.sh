#!/usr/bin/env bash
# PORT's core claim on Fashion-MNIST: with few real images, adding proxy images (here: held-out real images, an ideal
# proxy) to every batch of PGD adversarial training raises robust accuracy at the same number of epochs over the real
# data. Each run resumes if interrupted; finished runs (result.json present) are skipped.
#   scripts/experiments/port-fashion-mnist.sh [OUT_DIR]
# Set PROXYROBUST to another binary (e.g. a published copy) to keep developing while it runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/runs/port-fashion-mnist}"
bin="${PROXYROBUST:-$root/proxyrobust}"
common=(train --method pgd --norm linf --eps 0.1 --attack-steps 10 --val-size 500 --eval-size 2000
        --batch-size 128 --lr 0.1 --test-attack-steps 20 --checkpoint-every 50)
run() {  # name epochs seed [extra...]
  local name=$1 epochs=$2 seed=$3; shift 3
  [ -f "$out/$name/result.json" ] && { echo "skip $name (done)"; return; }
  echo "run $name"
  "$bin" "${common[@]}" --epochs "$epochs" --seed "$seed" --out "$out/$name" --resume "$@" > "$out/$name.log" 2>&1
}
mkdir -p "$out"
# 1,000 real images: 60 epochs (long) and 10 epochs (short)
for seed in 0 1; do
  run "long-real-s$seed" 60 "$seed" --train-size 1000
  run "long-port-s$seed" 60 "$seed" --train-size 1000 --synthetic holdout:20000
done
for seed in 0 1; do
  run "short-real-s$seed" 10 "$seed" --train-size 1000
  run "short-port-s$seed" 10 "$seed" --train-size 1000 --synthetic holdout:20000
done
# 500 real images, 100 epochs: fewer images and a longer schedule, where the real-only model can overfit
for seed in 0 1; do
  run "r500-real-s$seed" 100 "$seed" --train-size 500
  run "r500-port-s$seed" 100 "$seed" --train-size 500 --synthetic holdout:20000
done
echo "all runs done: $out"
