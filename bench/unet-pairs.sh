#!/usr/bin/env bash
# Issue 13's UNet goal (1.5x Debian's PyTorch 1.13 and 50% of the machine's peak) measured as alternated pairs. The
# machines here change speed within minutes (bench/RESULTS.md), so one run of each side, minutes apart, can put them in
# different phases; here ours and PyTorch's run in turns, PAIRS times, and each pair gives its own ratio.
#   bench/unet-pairs.sh [PAIRS] [THREADS]     (defaults 6 and 2; needs Debian's python3-torch)
# Each pair: ProxyRobust.Bench --probe --arch unet (one evaluation at batch 250, one training step at 128, each over 5
# calls after 3 warm-up calls), then bench/pytorch_unet.py --no-ddim, the same in PyTorch 1.13. Prints every pair,
# then the medians, the median of the pair ratios, and our MFU against the peak measured at the start.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-6}"
threads="${2:-2}"
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
bench=bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll
peak=$(dotnet "$bench" --peak --threads "$threads" | sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s ($threads threads), $(date -u +%FT%RZ)"
rows=""
for ((i = 1; i <= pairs; i++)); do
  ours=$(dotnet "$bench" --probe --arch unet --reps 5 --threads "$threads")
  ours_eval=$(sed -nE 's/^unet evaluation, batch 250: ([0-9.]+) ms/\1/p' <<<"$ours")
  ours_train=$(sed -nE 's/^unet training step, batch 128: ([0-9.]+) ms/\1/p' <<<"$ours")
  theirs=$(/usr/bin/python3 bench/pytorch_unet.py --threads "$threads" --reps 5 --no-ddim)
  their_eval=$(sed -nE 's/.*"evaluationsPerSecond": ([0-9.]+).*/\1/p' <<<"$theirs")
  their_train=$(sed -nE 's/.*"trainImagesPerSecond": ([0-9.]+).*/\1/p' <<<"$theirs")
  # PyTorch reports rates; turn them into the probe's milliseconds per call (batch 250 and 128).
  row=$(awk -v oe="$ours_eval" -v ot="$ours_train" -v te="$their_eval" -v tt="$their_train" \
    'BEGIN { pe = 250000 / te; pt = 128000 / tt; printf "%.1f %.1f %.1f %.1f %.3f %.3f", ot, pt, oe, pe, pt / ot, pe / oe }')
  rows+="$row"$'\n'
  read -r a b c d e f <<<"$row"
  printf "pair %d (%s): training step ours %s ms, PyTorch %s ms (%.2fx); evaluation ours %s ms, PyTorch %s ms (%.2fx)\n" \
    "$i" "$(date -u +%R)" "$a" "$b" "$e" "$c" "$d" "$f"
done
# Medians of each column, and our MFU at the median: a training step is 3 x 0.543 GFLOP x 128 images (forward,
# input and weight gradients), an evaluation 0.543 x 250 (bench/ProxyRobust.Bench/UNetBench.cs counts it).
printf "%s" "$rows" | awk -v peak="$peak" '
  { for (c = 1; c <= 6; c++) v[c, NR] = $c }
  END {
    n = NR
    for (c = 1; c <= 6; c++) {
      for (i = 1; i <= n; i++) s[i] = v[c, i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
      m[c] = n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }
    printf "medians over %d pairs: training step ours %.1f ms, PyTorch %.1f ms, pair ratio %.2fx, our MFU %.0f%%\n",
      n, m[1], m[2], m[5], 100 * 3 * 0.543 * 128 / (m[1] / 1000) / peak
    printf "                      evaluation ours %.1f ms, PyTorch %.1f ms, pair ratio %.2fx, our MFU %.0f%%\n",
      m[3], m[4], m[6], 100 * 0.543 * 250 / (m[3] / 1000) / peak
  }'
