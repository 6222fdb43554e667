#!/usr/bin/env bash
# Issue 13: PORT on generated proxies, Fashion-MNIST, the two settings of the issue. Every stage resumes after a kill
# and is skipped once done, so the script can be re-run until it finishes.
#   (a) no extra data: the generators see only the N = 2,000 real images the classifier trains on (same --train-size,
#       --val-size and --data-seed); PGD training real-only, + DDPM samples, + GAN samples, + held-out real images
#       (the ideal proxy), two seeds;
#   (b) the generators see all 60,000 training images; the classifier trains on all 60,000 real images without and
#       with 100,000 samples of each generator, one seed.
#   scripts/experiments/port-generated.sh a|b|all [OUT_DIR]
# PROXYROBUST picks another binary (e.g. a copy of the build, to keep developing while it runs); STEPS the DDPM
# sampler's network evaluations (default 25, DPM-Solver++(2M)).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
which="${1:-all}"
out="${2:-$root/runs/port-generated}"
bin="${PROXYROBUST:-$root/proxyrobust}"
steps="${STEPS:-25}"
mkdir -p "$out"
stage() {  # name done-file command...
  local name=$1 done=$2; shift 2
  [ -e "$done" ] && { echo "skip $name (done)"; return; }
  echo "$(date -u +%H:%M:%S) $name"
  "$@" > "$out/$name.log" 2>&1
}
train_generators() {  # tag [data options...]
  local tag=$1; shift
  stage "ddpm-$tag" "$out/ddpm-$tag/final.json" "$bin" generator train --kind ddpm --out "$out/ddpm-$tag" --resume "$@"
  stage "gan-$tag" "$out/gan-$tag/final.json" "$bin" generator train --kind gan --steps 3000 --batch-size 64 \
    --out "$out/gan-$tag" --resume "$@"
}
sample() {  # generator count store [sampler options...]
  local g=$1 n=$2 store=$3; shift 3
  stage "sample-$(basename "$store" .npy)" "$store" "$bin" generator sample --checkpoint "$g" --n "$n" --out "$store" "$@"
}
pgd=(train --method pgd --norm linf --eps 0.1 --attack-steps 10 --batch-size 128 --lr 0.1 --test-attack-steps 20
     --checkpoint-every 50 --eval-size 2000)
classify() {  # name [options...]
  local name=$1; shift
  stage "$name" "$out/$name/result.json" "$bin" "${pgd[@]}" --out "$out/$name" --resume "$@"
}

if [ "$which" = a ] || [ "$which" = all ]; then
  data=(--train-size 2000 --val-size 500 --data-seed 0)
  train_generators a "${data[@]}"
  sample "$out/ddpm-a" 50000 "$out/ddpm-a-50k.npy" --sampler dpm-solver --steps "$steps"
  sample "$out/gan-a" 50000 "$out/gan-a-50k.npy"
  for seed in 0 1; do
    common=("${data[@]}" --epochs 40 --seed "$seed")
    classify "a-real-s$seed" "${common[@]}"
    classify "a-ddpm-s$seed" "${common[@]}" --synthetic "$out/ddpm-a-50k.npy"
    classify "a-gan-s$seed" "${common[@]}" --synthetic "$out/gan-a-50k.npy"
    classify "a-holdout-s$seed" "${common[@]}" --synthetic holdout:50000
  done
fi
if [ "$which" = b ] || [ "$which" = all ]; then
  train_generators b
  sample "$out/ddpm-b" 100000 "$out/ddpm-b-100k.npy" --sampler dpm-solver --steps "$steps"
  sample "$out/gan-b" 100000 "$out/gan-b-100k.npy"
  common=(--val-size 1000 --epochs 20 --seed 0)
  classify "b-real-s0" "${common[@]}"
  classify "b-ddpm-s0" "${common[@]}" --synthetic "$out/ddpm-b-100k.npy"
  classify "b-gan-s0" "${common[@]}" --synthetic "$out/gan-b-100k.npy"
fi
echo "$(date -u +%H:%M:%S) done: $out"
