#!/usr/bin/env bash
# Sets up a fresh machine for lbtrain: a virtualenv in .venv with the pinned requirements, and
# the Fashion-MNIST idx files from Debian's dataset-fashion-mnist package when they are missing.
# Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
  echo "$wanted" > "$stamp"
fi

# Wheels that scripts/device_check.py carries to a device machine lacking these pure-Python
# packages (ml-collections, tensorboardX), at the versions pinned in requirements.txt.
wheels=.device_wheels
for pin in $(grep -E '^(ml-collections|tensorboardX)==' requirements.txt); do
  name=${pin%%==*}; version=${pin##*==}
  if ! ls "$wheels"/"$(echo "$name" | tr - _ | tr '[:upper:]' '[:lower:]')"-"$version"-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$wheels" "$pin"
  fi
done

fmnist=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null
  else
    echo "setup: Fashion-MNIST is not in $fmnist; run 'sudo apt-get install -y dataset-fashion-mnist'" \
         "or point --config.data.source_dir at a folder holding its four idx .gz files." >&2
  fi
fi
