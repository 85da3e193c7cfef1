# Sourced by ./dev and ./test: make sure the project's virtualenv exists and
# matches uv.lock. Needs only python3 (3.11 or newer) and network access to PyPI
# on first use; later runs are quick no-ops.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "causalkv needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

tools="$root/.tools"
if [ ! -x "$tools/bin/uv" ]; then
    echo "==> installing uv (the package manager) into .tools/" >&2
    "$python" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi

export UV_PYTHON="$(command -v "$python")"
export UV_PROJECT_ENVIRONMENT="$root/.venv"
"$tools/bin/uv" sync --locked --quiet "$@"
