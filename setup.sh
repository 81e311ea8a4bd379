#!/usr/bin/env bash
# Create .venv and install simonsca with its test tools.
#
# llama-cpp-python compiles llama.cpp from source (about 7 minutes on 2 cores the first time;
# pip caches the wheel, so later installs take seconds). LLAVA_BUILD=OFF skips the multimodal
# library simonsca never loads; llama.cpp's tools, examples, tests and server are already off
# when it is built as llama-cpp-python's subproject.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --progress-bar off -e ".[test]"
echo "simonsca installed in .venv -- next: .venv/bin/pytest evals/   (and .venv/bin/pytest tests/)"
