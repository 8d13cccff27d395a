"""Dumps every config's resolved values as JSON, to compare a refactor before/after.

Writes OUTDIR/<name>.json for each configs/<name>.py that has a get_config() (helper modules such
as configs/common.py have none and are skipped), as `to_json_best_effort(indent=2,
sort_keys=True)`. Run it from the repository root before and after a change, then compare:

  python scripts/dump_configs.py /tmp/before
  ... change configs/ ...
  python scripts/dump_configs.py /tmp/after
  diff -r /tmp/before /tmp/after   # empty: every config resolves to the same values
"""

import argparse
import glob
import importlib
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('outdir', help='folder for the <name>.json files (made if missing)')
  args = parser.parse_args()
  sys.path.insert(0, REPO)
  os.makedirs(args.outdir, exist_ok=True)
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    name = os.path.basename(path)[:-3]
    if name == '__init__':
      continue
    module = importlib.import_module(f'configs.{name}')
    if not hasattr(module, 'get_config'):
      continue
    config = module.get_config()
    with open(os.path.join(args.outdir, name + '.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    print(name)


if __name__ == '__main__':
  main()
