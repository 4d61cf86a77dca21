#!/usr/bin/env bash
# The GPU check on any CUDA machine: tests, benchmarks and the Fashion-MNIST sweep (docs/benchmarks.md).
#
#   bash benchmarks/gpu_check.sh --out DIR [--wheels WHEEL_DIR] [--data-dir FASHION_MNIST_DIR] [...]
#   bash benchmarks/gpu_check.sh --dry-run --out DIR
#
# --wheels DIR installs the carried wheels in DIR (no index, no dependencies) into a private folder
# put first on PYTHONPATH, for a machine that cannot reach a package index. Every other option goes
# to `python -m benchmarks.gpu_check` (see its --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

args=()
wheels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="${2:?--wheels needs a folder of .whl files}"; shift 2 ;;
    --wheels=*) wheels="${1#--wheels=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -n "$wheels" ]; then
  shopt -s nullglob
  found=("$wheels"/*.whl)
  if [ ${#found[@]} -eq 0 ]; then
    echo "gpu_check.sh: error: --wheels $wheels holds no .whl files" >&2
    exit 2
  fi
  site="${TMPDIR:-/tmp}/sparse_reg-gpu-check-site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "${found[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
export PYTHONUNBUFFERED=1
exec "$python" -m benchmarks.gpu_check "${args[@]}"
