#!/usr/bin/env bash
# scripts/launch_local.sh N [--devices_per_process=4] [--port=PORT] -- [lbtrain.main flags ...]
# Runs scripts/launch_local.py with the repository's virtualenv (see that file).
here="$(cd "$(dirname "$0")" && pwd)"
python="$here/../.venv/bin/python"
[ -x "$python" ] || python=python3
exec "$python" "$here/launch_local.py" "$@"
