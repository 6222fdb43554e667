#!/usr/bin/env bash
# First ARC measurement on Fashion-MNIST (issue 14): held-out real images, the GAN (3,000 steps) and an under-trained
# DDPM (step 2,500 of 6,000, DPM-Solver++ 10 steps; the GAN and DDPM runs of docs/GENERATORS.md must exist in runs/), 1,000 + 500 images per side, 5 epochs per discriminator.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
pr="${PROXYROBUST:-./proxyrobust}"  # it was run from a copy of the build, to keep developing meanwhile
out=runs/arc-first; mkdir -p $out
[ -f $out/holdout.npy ] || {
  $pr eval --checkpoint runs/fm-judge --split train --n-examples 10000 --seed 7 --save-points $out/holdout-f32.npy --threads 1
  $pr synthetic import --from $out/holdout-f32.npy --out $out/holdout.npy; }
[ -f $out/ddpm-step2500.npy ] || {
  mkdir -p $out/ddpm-step2500; cp runs/ddpm-b-60k/last.json runs/ddpm-b-60k/last.safetensors $out/ddpm-step2500/
  $pr generator sample --checkpoint $out/ddpm-step2500/last.json --n 2000 --steps 10 --out $out/ddpm-step2500.npy --threads 1; }
$pr arc --synthetic $out/holdout.npy runs/gan-b-10k.npy $out/ddpm-step2500.npy --names held-out-real gan ddpm-step2500 \
  --train-per-side 1000 --test-per-side 500 --epochs 5 --out $out/arc --threads 1
