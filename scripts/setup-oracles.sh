#!/usr/bin/env bash
# Installs the reference tools that otter's tests compare against into a
# project-local Python environment (.venv). Safe to run repeatedly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.otter-oracles"
want="$(cat "$root/scripts/oracle-requirements.txt")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/scripts/oracle-requirements.txt"
printf '%s' "$want" > "$stamp"
echo "oracles installed into $venv"
