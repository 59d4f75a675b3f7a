# Sourced by bin/serve and bin/test: make .venv and install the project once
# per pyproject.toml and constraints.txt (a stamp file remembers what was
# installed). Versions come from constraints.txt, the set the suite passed with.
set -euo pipefail
extras="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Stampede needs Python 3.11 or newer as \$PYTHON or python3" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
    echo "installing Stampede${extras:+ with [$extras]} into .venv (the first time takes a minute or two) ..." >&2
    log=.venv/install.log
    # One line per package as pip collects it: progress without pip's full output.
    if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
            -c constraints.txt -e ".${extras:+[$extras]}" >"$log" 2>&1 < /dev/null; then
        tail -n 30 "$log" >&2
        echo "install failed: the whole log is in $log" >&2
        exit 1
    fi &
    pid=$!
    seen=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        now=$(grep -cE '^(Collecting|Requirement already satisfied:) ' "$log" 2>/dev/null || true)
        if [ "${now:-0}" -gt "$seen" ]; then
            last=$(grep -E '^(Collecting|Requirement already satisfied:) ' "$log" | tail -n 1 |
                   sed -E 's/^(Collecting|Requirement already satisfied:) ([^ ]+).*/\2/')
            echo "  ... $now packages resolved ($last)" >&2
            seen=$now
        fi
    done
    wait "$pid"
    grep '^Successfully installed' "$log" | cut -c1-200 >&2 || true
    touch "$stamp"
fi
