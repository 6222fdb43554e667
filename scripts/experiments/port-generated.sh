#!/usr/bin/env bash
# Issue 13: PORT on generated proxies, Fashion-MNIST, the two settings of the issue. Every stage resumes after a kill
# and is skipped once done, so the script can be re-run until it finishes.
#   (a) no extra data: the generators see only the N = 2,000 real images the classifier trains on (same --train-size,
#       --val-size and --data-seed); PGD training real-only, + DDPM samples, + GAN samples (A_SAMPLES of each,
#       default 20,000), + 20,000 held-out real images (the ideal proxy) with A_HOLDOUT=1, two seeds;
#   (b) the generators see all 60,000 training images: the shipped ones (models/, made by make-generators.sh); the
#       classifier trains on all 60,000 real images without and with 100,000 samples of each generator, one seed,
#       PGD-5 for 10 epochs (the demo's training: PGD-5 keeps PORT's gain there, docs/REPRODUCING.md);
#       B_DDPM_SAMPLES sets the DDPM's count.
#   scripts/experiments/port-generated.sh a|b|all [OUT_DIR]
# PROXYROBUST picks another binary (e.g. a copy of the build, to keep developing while it runs); SAMPLE_THREADS the
# threads of each of the two sampling processes that fill a DDPM store side by side (default 1: on 2 cores two
# 1-thread processes beat one 2-thread process). Sampling uses the CLI's defaults (DPM-Solver++ 10 steps, guidance 2).
# DDPM_STEPS: the DDPM's training steps; A_GAN=0 leaves out the GAN (its 3,000 steps took 39 minutes on one thread of a
# 2-core AMD EPYC, AVX-512, beside another job).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
which="${1:-all}"
out="${2:-$root/runs/port-generated}"
bin="${PROXYROBUST:-$root/proxyrobust}"
ddpm_steps="${DDPM_STEPS:-3000}"  # the DDPM's default; it trains at a constant rate after warm-up, so a shorter run is
                                  # the same run stopped earlier (a longer one can resume it)
mkdir -p "$out"
stage() {  # name done-file command...
  local name=$1 done=$2; shift 2
  [ -e "$done" ] && { echo "skip $name (done)"; return; }
  echo "$(date -u +%H:%M:%S) $name"
  "$@" > "$out/$name.log" 2>&1
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
pgd=(train --method pgd --norm linf --eps 0.1 --batch-size 128 --lr 0.05 --warmup-epochs 2 --test-attack-steps 20
     --checkpoint-every 50 --eval-size 2000)
classify() {  # name [options...]
  local name=$1; shift
  stage "$name" "$out/$name/result.json" "$bin" "${pgd[@]}" --out "$out/$name" --resume "$@"
}

if [ "$which" = a ] || [ "$which" = all ]; then
  data=(--train-size 2000 --val-size 500 --data-seed 0)
  stage ddpm-a "$out/ddpm-a/final.json" "$bin" generator train --kind ddpm --steps "$ddpm_steps" --out "$out/ddpm-a" \
    --resume "${data[@]}"
  n="${A_SAMPLES:-20000}"
  kinds=(ddpm real)
  if [ "${A_GAN:-1}" = 1 ]; then
    # on 2 cores two 1-thread processes side by side beat one 2-thread process: the GAN trains while the DDPM samples
    stage gan-a "$out/gan-a/final.json" "$bin" generator train --kind gan --steps 3000 --batch-size 64 --threads 1 \
      --out "$out/gan-a" --resume "${data[@]}" &
    [ -e "$out/ddpm-a-$n.npy" ] || { echo "$(date -u +%H:%M:%S) sample-ddpm-a-$n";
      "$bin" generator sample --checkpoint "$out/ddpm-a" --n "$n" --out "$out/ddpm-a-$n.npy" --threads 1 \
        > "$out/sample-ddpm-a-$n.log" 2>&1; }
    wait
    sample "$out/gan-a" "$n" "$out/gan-a-$n.npy"
    kinds+=(gan)
  else
    sample "$out/ddpm-a" "$n" "$out/ddpm-a-$n.npy"
  fi
  [ "${A_HOLDOUT:-0}" = 1 ] && kinds+=(holdout)  # the ideal proxy, 20,000 held-out real images
  for kind in "${kinds[@]}"; do
    case $kind in
      ddpm) proxy=(--synthetic "$out/ddpm-a-$n.npy") ;;
      gan) proxy=(--synthetic "$out/gan-a-$n.npy") ;;
      holdout) proxy=(--synthetic holdout:20000) ;;
      real) proxy=() ;;
    esac
    for seed in 0 1; do  # the two seeds side by side, one thread each
      classify "a-$kind-s$seed" "${data[@]}" --epochs 40 --attack-steps 10 --seed "$seed" --threads 1 "${proxy[@]}" &
    done
    wait
  done
fi
if [ "$which" = b ] || [ "$which" = all ]; then
  # B_DDPM_SAMPLES: the DDPM's count (default 100,000: about 3 hours of guided sampling on 2 cores; the first 50,000
  # are the same images whatever the count, chunk by chunk)
  nd="${B_DDPM_SAMPLES:-100000}"; kd="$((nd / 1000))k"
  sample "$root/models/fmnist-ddpm.json" "$nd" "$out/ddpm-b-$kd.npy"
  sample "$root/models/fmnist-gan.json" 100000 "$out/gan-b-100k.npy"
  common=(--val-size 1000 --epochs 10 --attack-steps 5 --seed 0)
  classify "b-real-s0" "${common[@]}"
  classify "b-ddpm$([ "$nd" = 100000 ] || echo "-$kd")-s0" "${common[@]}" --synthetic "$out/ddpm-b-$kd.npy"
  classify "b-gan-s0" "${common[@]}" --synthetic "$out/gan-b-100k.npy"
fi
echo "$(date -u +%H:%M:%S) done: $out"
