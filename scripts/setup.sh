#!/usr/bin/env bash
# Sourced by ./proxyrobust and ./test.sh: installs what is missing, then builds when sources changed.
# - Debian packages (Fashion-MNIST, the default real data; MPICH on request) via apt-get when run as root, else via sudo, else it says what to run.
# - NuGet packages via 'dotnet build' (which restores).
set -euo pipefail
PR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
PR_CONFIG="${PROXYROBUST_CONFIGURATION:-Release}"

# With the argument 'mpi' it also installs MPICH (mpiexec.mpich and libmpich.so.12), which only MPI runs and the
# test suite need.
pr_install_debian_packages() {
  local missing=()
  [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
  if [ "${1:-}" = mpi ] && ! command -v mpiexec.mpich >/dev/null 2>&1; then missing+=(mpich); fi
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "setup: please run as root: apt-get install ${missing[*]}" >&2; return 1
    fi
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

pr_check_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "setup: the .NET 10 SDK is required (https://learn.microsoft.com/dotnet/core/install/linux-debian)" >&2; return 1
  fi
}

# Builds the solution when any source or build file is newer than the last successful build.
pr_build() {
  local stamp="$PR_ROOT/artifacts/.build-$PR_CONFIG.stamp"
  if [ -f "$stamp" ] && [ -z "$(cd "$PR_ROOT" && find src build tests Directory.Build.props Directory.Build.targets Directory.Packages.props ProxyRobust.slnx \
        -newer "$stamp" \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.targets' -o -name '*.slnx' -o -name '*.json' \) \
        -not -path '*/bin/*' -not -path '*/obj/*' -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  echo "setup: building ($PR_CONFIG)..." >&2
  (cd "$PR_ROOT" && dotnet build ProxyRobust.slnx -c "$PR_CONFIG" -nologo -v quiet -clp:ErrorsOnly >&2)
  mkdir -p "$PR_ROOT/artifacts" && touch "$stamp"
}

pr_setup() {
  pr_install_debian_packages "${1:-}"
  pr_check_dotnet
  pr_build
}
