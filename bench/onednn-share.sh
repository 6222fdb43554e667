#!/usr/bin/env bash
# Issue 13's UNet goal (1.5x PyTorch 1.13 per training step): how much of a step both sides spend inside oneDNN.
# Both run the same diffusion UNet's training step (batch 128, forward, MSE, backward, Adam) with oneDNN's verbose log
# on, which times every primitive it executes (convolutions, and reorders: PyTorch's NCHW activations go to oneDNN's
# blocked layout and back around every convolution; ours are channels-last, which oneDNN convolves as they are, so
# little is reordered). Whatever a step spends outside oneDNN is each framework's own work (GroupNorm, SiLU,
# additions, autograd, Adam). If PyTorch's whole step is less than 1.5x our time inside oneDNN alone, no change around
# the kernels can reach 1.5x.
#   bench/onednn-share.sh [THREADS] [REPS]     (defaults 2 and 10; needs Debian's python3-torch)
# Prints, per side, the wall time of a step and its oneDNN time by primitive kind; the verbose log itself costs a
# little time, the same on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
reps="${2:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
bench=bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll
peak=$(dotnet "$bench" --peak --threads "$threads" | sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s ($threads threads)"
ONEDNN_VERBOSE=1 dotnet "$bench" --probe --arch unet-train --reps "$reps" --threads "$threads" > "$work/ours.txt"
ours=$(sed -nE 's/^unet training step, batch 128: ([0-9.]+) ms/\1/p' "$work/ours.txt")
DNNL_VERBOSE=1 ONEDNN_VERBOSE=1 /usr/bin/python3 bench/pytorch_unet.py --threads "$threads" --reps "$reps" \
  --train-only > "$work/pytorch.txt"
theirs=$(sed -nE 's/.*"trainStepMilliseconds": ([0-9.]+).*/\1/p' "$work/pytorch.txt")

# Sums the verbose log's execution times (its last field, ms) by primitive kind, per step: the log covers the 3
# warm-up steps and REPS timed steps on both sides. With a fourth argument (PyTorch's step, ms), also the ratio of that
# step to this side's oneDNN time alone.
summarise() {
  awk -F, -v steps=$((reps + 3)) -v wall="$2" -v name="$3" -v pytorch="${4:-}" '
    { for (i = 1; i < NF; i++) if ($i == "exec" && $(i + 1) == "cpu") { t[$(i + 2)] += $NF; all += $NF; break } }
    END {
      printf "%-12s step %8.1f ms wall, %8.1f ms in oneDNN (%4.1f%%):", name, wall, all / steps, 100 * all / steps / wall
      for (k in t) printf " %s %.1f", k, t[k] / steps
      printf "\n"
      if (pytorch != "")
        printf "PyTorch step / our oneDNN time alone (the ceiling of any change outside oneDNN): %.2fx\n",
          pytorch / (all / steps)
    }' "$1"
}
summarise "$work/pytorch.txt" "$theirs" "PyTorch 1.13"
summarise "$work/ours.txt" "$ours" "ProxyRobust" "$theirs"
awk -v o="$ours" -v p="$theirs" 'BEGIN { printf "PyTorch step / ours: %.2fx\n", p / o }'
