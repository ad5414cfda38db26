#!/usr/bin/env bash
# Installs the lowest versions pyproject.toml declares (.ci/min_constraints.txt)
# into a fresh virtual environment and runs the fast tests there. Not part of
# the default test run (it downloads and installs about 1 GB).
#   .ci/min_versions.sh [VENV_DIR] [PYTHON]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/tmp/cvqvae_min_venv}"
python="${2:-python3.11}"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q --prefer-binary -c "$root/.ci/min_constraints.txt" \
  -r <(sed -n 's/^\([A-Za-z].*\)$/\1/p' "$root/.ci/min_constraints.txt" | cut -d= -f1)
"$venv/bin/pip" install -q --no-deps -e "$root"
"$venv/bin/pip" check || true
"$venv/bin/pip" freeze | grep -i -E '^(jax|jaxlib|flax|optax|orbax-checkpoint|grain|ml.collections|numpy|pillow|absl-py|tensorflow.datasets|tensorboardx|etils|protobuf)=='
cd "$root"
"$venv/bin/python" -m pytest -x -q tests/test_objectives.py tests/test_sharding.py \
  tests/test_manipulate.py tests/test_pipeline.py tests/test_api.py
