#!/usr/bin/env bash
# Installs the reference tools that otter's tests compare against into a
# project-local Python environment (.venv). Safe to run repeatedly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.otter-oracles"
# The network uploaders' own clients (tests/uploaders.rs), each into its
# own folder with no dependencies: only their wire code is imported
# (esphome.espota2 needs nothing outside esphome/), and the current ESPHome
# declares Python >= 3.12 for the rest of its tool.
uploaders="esphome==2026.10.0 esphome==2024.12.4 espota==0.5.0"
want="$(cat "$root/scripts/oracle-requirements.txt") $uploaders"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/scripts/oracle-requirements.txt"
for pin in $uploaders; do
    dir="$venv/uploaders/${pin/==/-}"
    rm -rf "$dir"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps --ignore-requires-python --target "$dir" "$pin"
done
printf '%s' "$want" > "$stamp"
echo "oracles installed into $venv"
