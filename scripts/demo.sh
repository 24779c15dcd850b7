#!/usr/bin/env bash
# The main job, for real, in the order that tells the story:
#   1. what routing buys: the router recipe on the bundled dcrouter outcome data (nine real
#      7-70B models, 5,608 train / 305 test queries), against the best single model;
#   2. the same pipeline on this machine: start two small local models (SmolLM2-135M,
#      Gemma-3-270M) with llama.cpp on 127.0.0.1:8081/8082, collect their outcomes on the shipped
#      question set, train, evaluate (with plots and a cross-validated comparison), answer a few
#      questions with voting, and stop the servers.
# Set-up runs first (the first time it builds llama.cpp). Measured times: README.md ("Time").
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${AVENGERS_OUT:-runs/demo}
mkdir -p "$out"
echo
echo "== 1/2 what routing buys: nine real 7-70B models (bundled dcrouter outcomes, 5,608 train / 305 test queries) =="
echo "accuracy = mean score of the chosen model's answers on held-out queries (1 = all right); best single = always the model best on the training queries; oracle = the right model for every query, in hindsight"
.venv/bin/avengers train --data bundled:train --k 64 --out "$out/dcrouter-router"
.venv/bin/avengers evaluate --router "$out/dcrouter-router" --data bundled:test \
  --train-data bundled:train --plots "$out/dcrouter-plots"
echo
echo "== 2/2 the same pipeline on this machine: two tiny local models (SmolLM2-135M, Gemma-3-270M) =="
.venv/bin/python -m avengers.demo --out "$out/local-models" "$@"
# docs/reproduction.md's section on this demo, filled from the summary it just wrote
.venv/bin/python benchmarks/reproduce.py --demo-only --summary "$out/local-models/summary.json"
echo
echo "demo done in $((SECONDS - T0))s (set-up included). Next: source .venv/bin/activate, then"
echo "  avengers local start    # the two local models again, on ports 8081/8082, + endpoints.yaml"
echo "and follow README.md from 'Train on your own outcome data'."
