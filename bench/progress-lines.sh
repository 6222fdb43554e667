#!/usr/bin/env bash
# Issue 12: a run of `eval --attack autoattack` on 200 points must print a progress line at least every 10 seconds when
# its output is not a terminal (CI logs). Trains a small PGD model (unless given one), runs AutoAttack standard on 200
# Fashion-MNIST test points with stdout piped, time-stamps every line, and reports the largest gap.
#   bench/progress-lines.sh [CHECKPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
model="${1:-}"
if [ -z "$model" ]; then
  ./proxyrobust train --method pgd --train-size 2000 --eval-size 200 --epochs 4 --batch-size 64 --lr 0.05 \
    --out "$work/model" > /dev/null
  model="$work/model"
fi
start=$(date +%s.%N)
./proxyrobust eval --checkpoint "$model" --attack autoattack --eps 0.1 --n-examples 200 --json "$work/aa.json" \
  | while IFS= read -r line; do printf '%s\t%s\n' "$(date +%s.%N)" "$line"; done \
  | awk -F'\t' -v start="$start" '{ printf "%.1f\t%s\n", $1 - start, $2 }' > "$work/lines.tsv"
cat "$work/lines.tsv"
awk -F'\t' 'BEGIN { last = 0; worst = 0 }
  $2 ~ /AutoAttack|eval/ { gap = $1 - last; if (gap > worst) worst = gap; last = $1 }
  END { printf "progress lines: %d, largest gap between them (from the start): %.1f s\n", NR, worst }' "$work/lines.tsv"
