#!/usr/bin/env bash
# Issue 16: AutoAttack fast (APGD-CE, then MALT-targeted APGD-T) and strong (standard, then APGD-PM and APGD-MALT)
# against standard, on the same points, with the machine's peak measured in the same run.
#   bench/fast-vs-standard.sh POINTS CHECKPOINT [CHECKPOINT ...]
# strong runs standard's four components first with the same seeds (tests/AutoAttackTests checks that they give
# standard's result), so standard's numbers are read off strong's first four stages and standard is not run twice.
# Writes bench/results/fast-vs-standard-DATE.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
points="${1:?usage: bench/fast-vs-standard.sh POINTS CHECKPOINT [CHECKPOINT ...]}"
shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
./proxyrobust --help > /dev/null # sets up and builds
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
peak=$(dotnet bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll --peak --threads 2 |
  sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s (2 threads)"
i=0
for model in "$@"; do
  for version in fast strong; do
    ./proxyrobust eval --checkpoint "$model" --attack autoattack --version "$version" --eps 0.1 \
      --n-examples "$points" --threads 2 --json "$work/$i-$version.json" > /dev/null
  done
  echo "$model" > "$work/$i.name"
  i=$((i + 1))
done
mkdir -p bench/results
out="bench/results/fast-vs-standard-$(date -u +%Y-%m-%d-%H%M).json"
/usr/bin/python3 - "$work" "$i" "$peak" "$out" << 'PY'
import json, sys
work, n, peak, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = []
print("| model | points | clean % | standard % | time | fast % | time | speed-up | strong % | time | "
      "robust for fast, broken by standard | broken only by strong's extras |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for i in range(n):
    name = open(f"{work}/{i}.name").read().strip()
    fast = json.load(open(f"{work}/{i}-fast.json"))
    strong = json.load(open(f"{work}/{i}-strong.json"))
    total = strong["points"]
    st = strong["autoattack"]["stages"]
    standard_stages = st[:4]
    assert [s["attack"] for s in standard_stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    standard_correct = standard_stages[-1]["robustAfter"]
    standard_seconds = sum(s["seconds"] for s in standard_stages)
    standard_broken = {p for s in standard_stages for p in s["broken"]}
    extra_broken = {p for s in st[4:] for p in s["broken"]}
    fast_broken = {p for s in fast["autoattack"]["stages"] for p in s["broken"]}
    missed_by_fast = sorted(standard_broken - fast_broken)
    found_only_by_fast = sorted(fast_broken - standard_broken)
    fast_correct = fast["autoattack"]["correct"]
    row = dict(model=name, points=total, clean=strong["clean"]["accuracy"],
               standard=standard_correct / total, standardSeconds=standard_seconds,
               fast=fast_correct / total, fastSeconds=fast["autoattack"]["seconds"],
               strong=strong["autoattack"]["accuracy"], strongSeconds=strong["autoattack"]["seconds"],
               missedByFast=missed_by_fast, foundOnlyByFast=found_only_by_fast, brokenOnlyByStrongExtras=sorted(extra_broken))
    rows.append(row)
    pct = lambda v: f"{100 * v:.1f}"
    print(f"| {name} | {total} | {pct(row['clean'])} | {pct(row['standard'])} | {standard_seconds:.0f} s | "
          f"{pct(row['fast'])} | {row['fastSeconds']:.0f} s | {standard_seconds / row['fastSeconds']:.1f}x | "
          f"{pct(row['strong'])} | {row['strongSeconds']:.0f} s | {len(missed_by_fast)} {missed_by_fast[:10]} "
          f"(fast alone: {len(found_only_by_fast)}) | {len(extra_broken)} {sorted(extra_broken)[:10]} |")
json.dump(dict(peakGflops=peak, rows=rows), open(out, "w"), indent=2)
print(f"written {out}")
PY
