#!/usr/bin/env bash
# Set up the Python environment the Makefile uses, once, offline-friendly.
#   - creates $VENV (default .venv) unless it exists; VENV=/your/env reuses yours
#   - installs torch==2.13.0 only when torch is absent (users with their own torch keep it;
#     pinning avoids a multi-GB CUDA download on CPU machines that carry that wheel)
#   - installs this project editable with its dev extras
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.mm-rag-installed"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
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
