#!/usr/bin/env bash
# Runs the whole test suite (sets up first, like ./proxyrobust). Extra arguments go to 'dotnet test', e.g. --filter Data.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/setup.sh"
pr_install_debian_packages mpi  # MpiTests run mpiexec.mpich -np 2
pr_check_dotnet
cd "$PR_ROOT"
# Style is checked, not argued (.editorconfig): CSharpier's layout and dotnet format's rules, before any test runs.
dotnet tool restore >/dev/null
if ! dotnet csharpier check . >/dev/null 2>&1; then
  dotnet csharpier check . 2>&1 | grep -E "^Error" | head -20
  echo "style: run 'dotnet csharpier format . && dotnet format ProxyRobust.slnx' and commit the result" >&2; exit 1
fi
dotnet format ProxyRobust.slnx --verify-no-changes -v q || {
  echo "style: run 'dotnet format ProxyRobust.slnx' and commit the result" >&2; exit 1; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# The whole solution, bench included: 'dotnet test' alone builds only the test project and what it references.
dotnet build ProxyRobust.slnx -c "$PR_CONFIG" -nologo -v q 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" = 0 ] && { dotnet test ProxyRobust.slnx -c "$PR_CONFIG" -nologo --no-build "$@" 2>&1 | tee -a "$log";
  status=${PIPESTATUS[0]}; }
set -e
# One plain closing line that any CI reader understands.
summary=$(grep -E "(Passed|Failed)!? +- +Failed: +[0-9]+, +Passed: +[0-9]+" "$log" | tail -1 || true)
if [ -n "$summary" ]; then
  failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")
  passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")
  skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")
  echo "tests: $passed passed, $failed failed, $skipped skipped"
fi
exit "$status"
