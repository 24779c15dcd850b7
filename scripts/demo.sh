#!/usr/bin/env bash
# The main job: set up, train a router on the bundled outcome data, and print its evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
out=${AVENGERS_OUT:-runs/demo}
mkdir -p "$out"
.venv/bin/avengers train --data bundled:train --k 64 --out "$out/router"
.venv/bin/avengers evaluate --router "$out/router" --data bundled:test \
  --train-data bundled:train --plots "$out/plots"
.venv/bin/avengers route --router "$out/router" \
  "Write a Python function that returns the n-th Fibonacci number." \
  "There are 3 houses in a row; the red house is left of the green one. Who lives where?"
