#!/usr/bin/env bash
# Runs every test: a type check, then node's test runner over the unit, security and integration files
# with the TAP reporter, whose closing "# pass / # fail" lines are the summary CI reads. Integration
# tests use the real kernel (network namespaces, cgroups, eBPF) and need root; they fail, never skip,
# without it. `test/run.sh unit` leaves them out (make test-unit, no root needed).
set -uo pipefail
cd "$(dirname "$0")/.."
# The Node 24 that make installs into .node/ where the machine's node is older (see the Makefile).
[ -x .node/bin/node ] && export PATH="$PWD/.node/bin:$PATH"
echo "# node $(node --version)"

echo "# type check (tsc --noEmit)"
if ! npx tsc -p tsconfig.json --noEmit; then
  echo "# type check failed; not running tests"
  echo "# pass 0"
  echo "# fail 1"
  exit 1
fi

# The files are listed explicitly, so that a missing folder or a typo shows as a count, not a glob.
# `run.sh unit` runs what needs neither root nor the kernel's namespaces: unit and security tests.
shopt -s nullglob
files=(test/unit/*.test.ts test/security/*.test.ts)
if [ "${1:-all}" != unit ]; then files+=(test/integration/*.test.ts); fi
# One file at a time: the integration tests share the machine's kernel and would contend for it.
exec node --import tsx --test --test-reporter=tap --test-concurrency=1 --test-timeout=600000 "${files[@]}"
