#!/usr/bin/env bash
# Create .venv with everything the zoo needs. Idempotent: a step whose result is already there is skipped,
# and `make` runs this script only when requirements/, setup.py, pyproject.toml or the C++ sources changed.
#
# Wheels that have to be built from source (mmcv with its ops: 25-40 min on 2 cores; fairseq: 1-2 min) are
# cached in $SAU_ZOO_CACHE (default ~/.cache/sau-zoo). An mmcv wheel in ../shared/wheelhouse (CI and the
# developers' machines) is used instead of building one.
#
# The one path bootstrap of the zoo: the repository root goes on the venv's path through a `sau_zoo.pth` file
# in its site-packages (rewritten on every run, so a moved clone points at its new place), which lets
# `python tools/train.py ...`, the configs' custom_imports (`detection.models`, `segmentation.sau_seg`) and the
# tests import `tools.zoo`, the task packages and `translation` from any folder. Outside this venv: run with
# PYTHONPATH=<repository root>, as in the OpenMMLab projects.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
CACHE=${SAU_ZOO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sau-zoo}
WHEELHOUSE=${SAU_ZOO_WHEELHOUSE:-../shared/wheelhouse}
PY=.venv/bin/python

if [ ! -x "$PY" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the zoo is pinned for Python 3.11"' \
    || { echo "setup: need Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi
pip() { "$PY" -m pip --disable-pip-version-check "$@"; }

echo "== base: pip, torch, numpy, build tools"
pip install -q pip==25.3  # >= 25.3 for `pip wheel --build-constraint` (fairseq's build); venvs start older
pip install -q -r requirements/base.txt

echo "== mmcv 2.1.0 with compiled ops"
if ! "$PY" -c 'import mmcv, mmcv._ext; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  wheel=$(ls "$WHEELHOUSE"/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "   no prebuilt wheel in $WHEELHOUSE: building from the sdist (25-40 min on 2 cores, cached in $CACHE)"
    wheel=$("$PY" tools/env/build_wheel.py mmcv "$CACHE/wheels" | tail -n 1)
  fi
  pip install -q --no-deps "$wheel"
fi
pip install -q -r requirements/mm.txt -r requirements/test.txt

echo "== fairseq 0.12.2 (official sdist + tools/env/fairseq-0.12.2-sau-zoo.patch)"
# the installed build must be the one build_wheel.py would make now (its label: the patch's sha256, numpy), or
# it is rebuilt
if ! "$PY" -c 'import fairseq, importlib.metadata as m; from tools.env.build_wheel import RECIPES, local_version
assert m.version("fairseq") == "0.12.2+" + local_version("fairseq", RECIPES["fairseq"])' 2>/dev/null; then
  wheel=$("$PY" tools/env/build_wheel.py fairseq "$CACHE/wheels" | tail -n 1)
  pip install -q --no-deps "$wheel"
fi
pip install -q -r requirements/fairseq.txt

echo "== ONNX export and runtime (tools/export.py, tests/test_export.py)"
pip install -q -r requirements/deploy.txt

echo "== sau_core (editable, builds its C++ CPU kernels)"
pip install -q --no-build-isolation --no-deps -e .

echo "== the repository root on the venv's path (sau_zoo.pth)"
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pwd > "$site/sau_zoo.pth"

"$PY" tools/env/check_env.py
