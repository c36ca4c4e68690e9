#!/usr/bin/env bash
# Build the demo image FROM scratch with Debian's static busybox.
# Usage: demo/image/build.sh [REPOSITORY] TAG [TAG...]
#        demo/image/build.sh --broken TAG          (a release whose health check fails)
#   demo/image/build.sh v1.0.0 v2.0.0             -> deployproof-demo/busybox:v1.0.0, :v2.0.0
#   demo/image/build.sh localhost:5000/app v1     -> localhost:5000/app:v1
#   demo/image/build.sh --broken v4.0.0           -> deployproof-demo/busybox:v4.0.0, unhealthy
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repository=deployproof-demo/busybox
if [[ ${1:-} == --broken ]]; then
  shift
  "$0" v1.0.0 >/dev/null
  out=$(DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$repository:v1.0.0" \
        -f "$here/Dockerfile.broken" -t "$repository:$1" "$here" 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$repository:$1"
  exit 0
fi
if [[ $# -gt 1 && $1 != v* ]]; then repository=$1; shift; fi
[[ $# -ge 1 ]] || { echo "usage: $0 [REPOSITORY] TAG [TAG...]" >&2; exit 2; }
# The image has no libc, so busybox must be the static build.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" \
  || { echo "needs Debian's busybox-static: apt-get install busybox-static" >&2; exit 1; }
busybox=$(dpkg-query -L busybox-static | grep -m1 '/bin/busybox$')
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$busybox" "$context/busybox"
cp "$here/Dockerfile" "$here/serve.sh" "$context/"
tags=()
for tag in "$@"; do tags+=(-t "$repository:$tag"); done
out=$(DOCKER_BUILDKIT=0 docker build -q "${tags[@]}" "$context" 2>&1) || { echo "$out" >&2; exit 1; }
printf '%s\n' "${@/#/$repository:}"
