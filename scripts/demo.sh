#!/usr/bin/env bash
# Start the local cloud, run the example job on it, stop the cloud (always).
set -euo pipefail
cd "$(dirname "$0")/.."
export STARBURST_LOCAL_DIR="${STARBURST_LOCAL_DIR:-$PWD/.starburst/demo}"
starburst-cli local up
trap 'starburst-cli local down' EXIT
eval "$(starburst-cli local env)"
started=$(date +%s)
python examples/bootstrap_diabetes.py "$@"
echo "demo finished in $(( $(date +%s) - started )) s (plus local cloud start-up)"
