"""`python -m lbtrain.sweep_report`, the tables and plots of one or more sweeps, as the README
and the docs show it; the command's code lives in lbtrain.studies.sweep_report."""

from lbtrain.studies.sweep_report import main, run  # pylint: disable=unused-import

if __name__ == '__main__':
  run()
