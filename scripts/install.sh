#!/usr/bin/env bash
# Sets up everything the testbed needs, from the project's own files only.
#   1. Debian's GNU Radio 3.10 and python3-zmq (apt), if `from gnuradio import gr` fails.
#   2. A virtual environment from /usr/bin/python3 with --system-site-packages,
#      so GNU Radio's Python bindings import inside it.
#   3. torch: the CPU build where no NVIDIA GPU is present (pinned, so pip does not
#      pull several GB of CUDA wheels), the default build otherwise.
#   4. This project (editable) with NumPy < 2 and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SYS_PY=/usr/bin/python3
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

log() { echo "[install] $*" >&2; }

need_apt=0
"$SYS_PY" -c 'from gnuradio import gr, blocks, digital, channels, zeromq, pdu' 2>/dev/null || need_apt=1
"$SYS_PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt=1
command -v grcc >/dev/null 2>&1 || need_apt=1
if [ "$need_apt" = 1 ]; then
    log "installing Debian packages: gnuradio python3-zmq python3-venv"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        gnuradio python3-zmq python3-venv >/dev/null
fi
"$SYS_PY" -c 'from gnuradio import gr; v=gr.version(); assert v.startswith("3.10"), v' \
    || { echo "install: GNU Radio 3.10 is required (found $("$SYS_PY" -c 'from gnuradio import gr; print(gr.version())' 2>&1))" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV from $SYS_PY with --system-site-packages"
    "$SYS_PY" -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        log "NVIDIA GPU present: installing torch==$TORCH_VERSION (CUDA build)"
        "${PIP[@]}" "torch==$TORCH_VERSION"
    else
        log "no GPU: installing torch==$TORCH_VERSION CPU build"
        # Where a local CPU wheel is on pip's find-links (this workplace's machines),
        # `torch==X` takes it (2.13.0+cpu sorts above 2.13.0); ask for +cpu explicitly first.
        # Else the CPU index of download.pytorch.org; only as a last resort the default
        # (CUDA) wheel from the configured index, with a warning.
        "${PIP[@]}" "torch==$TORCH_VERSION+cpu" "numpy<2" 2>/dev/null \
            || "${PIP[@]}" --index-url https://download.pytorch.org/whl/cpu \
                "torch==$TORCH_VERSION" 2>/dev/null \
            || { log "WARNING: no CPU-only torch wheel reachable; installing the default build";
                 "${PIP[@]}" "torch==$TORCH_VERSION" "numpy<2"; }
    fi
fi
log "installing the project and its dependencies (numpy<2)"
"${PIP[@]}" -e ".[dev]" "numpy<2"
"$VENV/bin/python" - <<'PY'
import numpy, torch, transformers, peft, zmq, scipy, skyfield, cryptography
from gnuradio import gr
assert numpy.__version__.startswith("1."), numpy.__version__
print(f"[install] ok: gnuradio {gr.version()} numpy {numpy.__version__} torch {torch.__version__} "
      f"transformers {transformers.__version__} peft {peft.__version__} cuda={torch.cuda.is_available()}")
PY
