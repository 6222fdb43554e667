#!/usr/bin/env bash
# Runs the whole test suite (sets up first, like ./proxyrobust). Extra arguments go to 'dotnet test', e.g. --filter Data.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/setup.sh"
pr_install_debian_packages
pr_check_dotnet
cd "$PR_ROOT"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
dotnet test ProxyRobust.slnx -c "$PR_CONFIG" -nologo "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line that any CI reader understands.
summary=$(grep -E "(Passed|Failed)!? +- +Failed: +[0-9]+, +Passed: +[0-9]+" "$log" | tail -1)
if [ -n "$summary" ]; then
  failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")
  passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")
  skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")
  echo "tests: $passed passed, $failed failed, $skipped skipped"
fi
exit "$status"
