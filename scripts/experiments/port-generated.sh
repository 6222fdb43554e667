#!/usr/bin/env bash
# Issue 13: PORT on generated proxies, Fashion-MNIST, the two settings of the issue. Every stage resumes after a kill
# and is skipped once done, so the script can be re-run until it finishes.
#   (a) no extra data: the generators see only the N = 2,000 real images the classifier trains on (same --train-size,
#       --val-size and --data-seed); PGD training real-only, + DDPM samples, + GAN samples, + held-out real images
#       (the ideal proxy), 20,000 of each, two seeds;
#   (b) the generators see all 60,000 training images: the shipped ones (models/, made by make-generators.sh); the
#       classifier trains on all 60,000 real images without and with 100,000 samples of each generator, one seed,
#       PGD-5 for 10 epochs (the demo's training: PGD-5 keeps PORT's gain there, docs/REPRODUCING.md).
#   scripts/experiments/port-generated.sh a|b|all [OUT_DIR]
# PROXYROBUST picks another binary (e.g. a copy of the build, to keep developing while it runs); SAMPLE_THREADS the
# threads of each of the two sampling processes that fill a DDPM store side by side (default 1: on 2 cores two
# 1-thread processes beat one 2-thread process). Sampling uses the CLI's defaults (DPM-Solver++ 10 steps, guidance 2).
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
sample() {  # generator count store: two shards side by side, then the merge (a third call that finds both)
  local g=$1 n=$2 store=$3
  [ -e "$store" ] && { echo "skip sample-$(basename "$store" .npy) (done)"; return; }
  echo "$(date -u +%H:%M:%S) sample-$(basename "$store" .npy)"
  for shard in 0 1; do
    "$bin" generator sample --checkpoint "$g" --n "$n" --out "$store" --shard "$shard/2" \
      --threads "${SAMPLE_THREADS:-1}" > "$out/sample-$(basename "$store" .npy)-$shard.log" 2>&1 &
  done
  wait
  "$bin" generator sample --checkpoint "$g" --n "$n" --out "$store" > "$out/sample-$(basename "$store" .npy).log" 2>&1
}
# lr 0.05 with a 2-epoch warm-up: at lr 0.1, 2 of 15 compare-proxies cells diverged to chance, none at 0.05 (PROXIES.md)
pgd=(train --method pgd --norm linf --eps 0.1 --batch-size 128 --lr 0.05 --warmup-epochs 2 --test-attack-steps 20
     --checkpoint-every 50 --eval-size 2000)
classify() {  # name [options...]
  local name=$1; shift
  stage "$name" "$out/$name/result.json" "$bin" "${pgd[@]}" --out "$out/$name" --resume "$@"
}

if [ "$which" = a ] || [ "$which" = all ]; then
  data=(--train-size 2000 --val-size 500 --data-seed 0)
  train_generators a "${data[@]}"
  sample "$out/ddpm-a" 20000 "$out/ddpm-a-20k.npy"
  sample "$out/gan-a" 20000 "$out/gan-a-20k.npy"
  for seed in 0 1; do
    common=("${data[@]}" --epochs 40 --attack-steps 10 --seed "$seed")
    classify "a-ddpm-s$seed" "${common[@]}" --synthetic "$out/ddpm-a-20k.npy"
    classify "a-real-s$seed" "${common[@]}"
    classify "a-gan-s$seed" "${common[@]}" --synthetic "$out/gan-a-20k.npy"
    classify "a-holdout-s$seed" "${common[@]}" --synthetic holdout:20000
  done
fi
if [ "$which" = b ] || [ "$which" = all ]; then
  sample "$root/models/fmnist-ddpm.json" 100000 "$out/ddpm-b-100k.npy"
  sample "$root/models/fmnist-gan.json" 100000 "$out/gan-b-100k.npy"
  common=(--val-size 1000 --epochs 10 --attack-steps 5 --seed 0)
  classify "b-real-s0" "${common[@]}"
  classify "b-ddpm-s0" "${common[@]}" --synthetic "$out/ddpm-b-100k.npy"
  classify "b-gan-s0" "${common[@]}" --synthetic "$out/gan-b-100k.npy"
fi
echo "$(date -u +%H:%M:%S) done: $out"
