# Sourced by bin/serve and bin/test: make .venv and install the project once
# per pyproject.toml version (a stamp file remembers what was installed).
set -euo pipefail
extras="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Stampede needs Python 3.11 or newer as \$PYTHON or python3" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
    echo "installing Stampede into .venv ..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
