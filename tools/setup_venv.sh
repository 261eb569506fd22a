#!/bin/sh
# Create (or repair) the course's virtual environment and install everything into it.
# Called by `make setup` (and so by `make lab` and `make test`); safe to run again.
#
#   PYTHON  the interpreter that creates the venv (default: python3)
#   VENV    where the venv lives (default: .venv)
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH="torch==2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# A venv whose python cannot run pip is broken (for instance made by a Python without
# ensurepip): every later step would fail the same way, so start it again.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "setup: $VENV is broken (its python cannot run pip): rebuilding it"
    rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null \
        || fail "$PYTHON is missing or older than Python 3.10; install Python >= 3.10 and run \`make PYTHON=/path/to/python3\`"
    if ! "$PYTHON" -m venv "$VENV" || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        fail "$PYTHON cannot create a virtual environment with pip (no venv/ensurepip module). On Debian/Ubuntu: sudo apt-get install python3-venv; then run make again."
    fi
fi

PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0'" 2>/dev/null; then
    echo "setup: installing PyTorch 2.13.0 (CPU build, about 200 MB to download, 0.8 GB on disk) ..."
    if [ "$(uname -s)" = Linux ]; then
        # On Linux, PyPI's torch is the CUDA build plus ~16 nvidia-* wheels (several GB);
        # PyTorch's own CPU index has the CPU-only build.
        $PIP install --quiet "$TORCH" --index-url "$CPU_INDEX" || {
            echo "setup: PyTorch's CPU index ($CPU_INDEX) is not reachable: installing $TORCH from the default index instead"
            $PIP install --quiet "$TORCH"
        }
    else
        $PIP install --quiet "$TORCH"  # macOS and Windows: the default wheel is CPU-only
    fi
fi
echo "setup: installing lora_lab and its tools (JupyterLab, PEFT, transformers, pytest ...; about 1 GB more) ..."
$PIP install --quiet -e ".[dev]"
echo "setup: done. $VENV holds $(du -sh "$VENV" 2>/dev/null | cut -f1) in all."
