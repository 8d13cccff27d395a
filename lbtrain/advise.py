"""`python -m lbtrain.advise`, the batch-size advisor, as the README and the docs show it; the
command's code lives in lbtrain.studies.advise."""

from lbtrain.studies.advise import main, run  # pylint: disable=unused-import

if __name__ == '__main__':
  run()
