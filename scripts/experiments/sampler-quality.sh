#!/usr/bin/env bash
# Issue 13: sample quality against network evaluations, per sampler, for one DDPM checkpoint: samples N images with
# each (sampler, steps), times it, and runs `synthetic report` against the real test images in the feature space of a
# real-data classifier. Prints a Markdown table (one row per setting) and keeps the stores and reports in OUT/.
#   scripts/experiments/sampler-quality.sh GENERATOR CLASSIFIER OUT [N] ["dpm-solver:10 ddim:10 dpm-solver:25:3 ..."]
# A setting is SAMPLER:STEPS or SAMPLER:STEPS:GUIDANCE (classifier-free guidance scale; default the CLI's).
# PROXYROBUST (default ./proxyrobust) runs the CLI; THREADS (default 0: all cores) is passed to every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
generator="$1"; classifier="$2"; out="$3"; n="${4:-1000}"
settings="${5:-dpm-solver:10 ddim:10 dpm-solver:25 ddim:25 ddim:50 dpm-solver:100 ddim:100}"
cli="${PROXYROBUST:-./proxyrobust}"; threads="${THREADS:-0}"
mkdir -p "$out"
table="$out/table.md"
echo "| sampler | steps | guidance | img/s | n | recognised % (95% CI) | Fréchet distance | per-class FD | precision | recall |" > "$table"
echo "|---|---|---|---|---|---|---|---|---|---|" >> "$table"
for s in $settings; do
  IFS=: read -r sampler steps guide <<< "$s"
  name="$sampler-$steps${guide:+-g$guide}"
  store="$out/$name.npy"
  start=$(date +%s%N)
  $cli generator sample --checkpoint "$generator" --n "$n" --sampler "$sampler" --steps "$steps" --out "$store" \
    ${guide:+--guidance "$guide"} --threads "$threads" > /dev/null
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  $cli synthetic report --synthetic "$store" --classifier "$classifier" --n "$n" --out "$out/$name" \
    --threads "$threads" > /dev/null
  rate=$(( n * 10000 / ms )); rate="$((rate / 10)).$((rate % 10))"
  # the report's row "| synthetic store | n | ... |" with the setting in front
  grep -m1 '^| synthetic store |' "$out/$name/report.md" \
    | sed "s/^| synthetic store |/| $sampler | $steps | ${guide:-default} | $rate |/" >> "$table"
done
grep -m1 '^| held-out real' "$out/$name/report.md" | sed 's/^| held-out real[^|]*|/| held-out real | - | - | - |/' >> "$table"
cat "$table"
