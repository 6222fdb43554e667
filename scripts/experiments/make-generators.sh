#!/usr/bin/env bash
# Issue 13: the generators shipped in models/, remade by anyone: a DDPM and a GAN trained on all 60,000 Fashion-MNIST
# training images (setting (b)), packed to float16 sampling weights (models/fmnist-ddpm.*, models/fmnist-gan.*), their
# training logs and last sample grids copied to docs/results/generators/. Every stage resumes after a kill (run the
# script again) and is skipped once done.
#   scripts/experiments/make-generators.sh [OUT_DIR]
# DDPM_STEPS / GAN_STEPS override the training lengths (defaults: the CLI's DDPM default, 3,000 GAN steps of 64);
# THREADS_DDPM / THREADS_GAN the torch threads of each (default 1 each: the two trainings run side by side, which on
# 2 cores beats one after the other with 2 threads each, since a second thread speeds a run up only 1.7x);
# THREADS_DDPM_ALONE (2) those of the DDPM once the GAN is done.
# PROXYROBUST picks another binary (e.g. a copy of the build, to keep developing while it runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/runs}"
bin="${PROXYROBUST:-$root/proxyrobust}"
mkdir -p "$out" "$root/models" "$root/docs/results/generators"
ddpm_steps=(${DDPM_STEPS:+--steps "$DDPM_STEPS"})
train() {  # name threads [options...]
  local name=$1 threads=$2; shift 2
  [ -e "$out/$name/final.json" ] && { echo "skip $name (trained)"; return; }
  echo "$(date -u +%H:%M:%S) training $name"
  "$bin" generator train --out "$out/$name" --resume --threads "$threads" "$@" >> "$out/$name.log" 2>&1
}
train ddpm-b-60k "${THREADS_DDPM:-1}" --kind ddpm "${ddpm_steps[@]}" &
ddpm=$!
train gan-b-60k "${THREADS_GAN:-1}" --kind gan --steps "${GAN_STEPS:-3000}" --batch-size 64 &
gan=$!
wait "$gan"
# The GAN is done first (about an hour); the DDPM then continues alone with both cores (SIGTERM saves its state).
if [ ! -e "$out/ddpm-b-60k/final.json" ]; then
  pkill -TERM -f -- "--out $out/ddpm-b-60k " || true
  wait "$ddpm" || true
  train ddpm-b-60k "${THREADS_DDPM_ALONE:-2}" --kind ddpm "${ddpm_steps[@]}"
fi
for kind in ddpm gan; do
  precision=$([ "$kind" = gan ] && echo int8 || echo float16)  # each under 5 MB
  "$bin" generator pack --checkpoint "$out/$kind-b-60k" --out "$root/models/fmnist-$kind" --precision "$precision"
  cp "$out/$kind-b-60k.log" "$root/docs/results/generators/$kind-b-60k.log"
  grid=$(ls "$out/$kind-b-60k"/samples-*.png | awk -F'samples-' '{print $NF + 0, $0}' | sort -n | tail -1 | cut -d' ' -f2-)
  cp "$grid" "$root/docs/results/generators/$kind-b-60k-step$(basename "$grid" .png | sed 's/samples-0*//').png"
done
# The demo's DDPM proxy: 5,000 samples of the shipped DDPM (the demo cannot afford to sample them on a slow machine;
# `demo --sample-ddpm` does, with the same request: Demo.DdpmSampling), gzip-compressed.
samples="$out/ddpm-demo-5k"
"$bin" generator sample --checkpoint "$root/models/fmnist-ddpm.json" --n 5000 --chunk-size 100 --seed 0 \
  --out "$samples.npy"
gzip -9 -n -c "$samples.npy" > "$root/models/fmnist-ddpm-samples.npy.gz"
gzip -9 -n -c "$samples.labels.npy" > "$root/models/fmnist-ddpm-samples.labels.npy.gz"
ls -l "$root"/models/
