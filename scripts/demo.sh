#!/usr/bin/env bash
# The main job, for real: set up (first run builds llama.cpp, ~5 min), start two small local
# models (SmolLM2-135M, Gemma-3-270M) with llama.cpp on 127.0.0.1, collect their outcomes on the
# shipped question set, train a router, evaluate it against each model (with plots), answer a few
# questions with voting, and stop the servers. Then the same router recipe on the bundled
# dcrouter outcome data (nine 7-70B models) for a larger-scale evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${AVENGERS_OUT:-runs/demo}
mkdir -p "$out"
.venv/bin/python -m avengers.demo --out "$out/local-models" "$@"
echo
echo "== the same recipe on the bundled dcrouter outcomes (9 models, 5,608 train / 305 test) =="
.venv/bin/avengers train --data bundled:train --k 64 --out "$out/dcrouter-router"
.venv/bin/avengers evaluate --router "$out/dcrouter-router" --data bundled:test \
  --train-data bundled:train --plots "$out/dcrouter-plots"
