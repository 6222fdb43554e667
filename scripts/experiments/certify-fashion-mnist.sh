#!/usr/bin/env bash
# Certified robustness with proxy data on Fashion-MNIST: Gaussian-noise training (sigma 0.25) on 2,000 real images,
# with and without 20,000 proxy images (held-out real images, an ideal proxy), then randomized-smoothing certification
# of the same 200 test points. Resumable: finished steps are skipped.
#   scripts/experiments/certify-fashion-mnist.sh [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/runs/certify-fashion-mnist}"
bin="${PROXYROBUST:-$root/proxyrobust}"
mkdir -p "$out"
for seed in 0 1; do
  for kind in real port; do
    name="$kind-s$seed"
    extra=()
    [ "$kind" = port ] && extra=(--synthetic holdout:20000)
    if [ ! -f "$out/$name/result.json" ]; then
      echo "train $name"
      "$bin" train --method gaussian --sigma 0.25 --train-size 2000 --eval-size 1000 --epochs 60 --batch-size 128 --lr 0.05 \
        --seed "$seed" --out "$out/$name" --resume "${extra[@]}" > "$out/$name.train.log" 2>&1
    fi
    if [ ! -f "$out/$name/cert.json" ]; then
      echo "certify $name"
      "$bin" certify --checkpoint "$out/$name" --sigma 0.25 --n0 100 --n 10000 --alpha 0.001 --n-examples 200 --seed 5 \
        --out "$out/$name/cert.tsv" > "$out/$name.certify.log" 2>&1
    fi
  done
done
echo "all done: $out"
