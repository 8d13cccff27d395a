"""`python -m lbtrain.sweep`, the batch-size sweep, as the README and the docs show it; the
command's code lives in lbtrain.studies.sweep."""

from lbtrain.studies.sweep import main, run  # pylint: disable=unused-import

if __name__ == '__main__':
  run()
