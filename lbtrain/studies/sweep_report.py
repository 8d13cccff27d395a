"""Tables and plots of batch-size sweeps, from the runs' own records.

`lbtrain.sweep` stores each sweep's results in DIR/summary.json and renders them with
`write_report`; several sweeps (say one per recipe) can be drawn together with

    python -m lbtrain.sweep_report --sweep=LABEL=DIR [--sweep=LABEL=DIR ...] --out_dir=OUT \
        [--target_accuracy=0.85]

What each batch gives (`results.Summary`: steps to result, throughput, the critical-batch fit)
is derived once per sweep here and handed to every table (`tables`) and plot (`plots`).
"""

import os
from typing import Mapping, Sequence

from absl import flags

from lbtrain import cli
from lbtrain.studies import plots
from lbtrain.studies import tables
from lbtrain.studies.results import load_results
from lbtrain.studies.results import RunResult
from lbtrain.studies.results import SUMMARY_JSON
from lbtrain.studies.results import Summary

SUMMARY_CSV = 'summary.csv'
SUMMARY_MD = 'summary.md'
FINAL_ACCURACY_PNG = 'final_accuracy.png'
EVAL_ACCURACY_PNG = 'eval_accuracy.png'
STEPS_TO_TARGET_PNG = 'steps_to_target.png'
STEPS_EXAMPLES_PNG = 'steps_vs_examples.png'


def write_report(out_dir: str, series: Mapping[str, Sequence[RunResult]],
                 target: float | None) -> list[str]:
  """summary.csv, summary.md and the plots (steps to target only with a target); their paths."""
  os.makedirs(out_dir, exist_ok=True)
  summaries = {label: Summary(runs, target) for label, runs in series.items()}
  paths = [os.path.join(out_dir, name) for name in (SUMMARY_CSV, SUMMARY_MD,
                                                    FINAL_ACCURACY_PNG, EVAL_ACCURACY_PNG)]
  tables.write_csv(paths[0], series, target)
  with open(paths[1], 'w', encoding='utf-8') as f:
    f.write(tables.markdown(summaries, target))
  plots.plot_final_accuracy(paths[2], series)
  plots.plot_eval_curves(paths[3], series)
  if target is not None:
    paths.append(os.path.join(out_dir, STEPS_TO_TARGET_PNG))
    plots.plot_steps_to_target(paths[-1], summaries, target)
    paths.append(os.path.join(out_dir, STEPS_EXAMPLES_PNG))
    plots.plot_steps_vs_examples(paths[-1], summaries, target)
  return paths


def _define_flags() -> None:
  """Only when run as a program: `lbtrain.studies.sweep` imports this module and has flags of
  its own."""
  flags.DEFINE_multi_string('sweep', None, 'LABEL=DIR of a sweep folder holding summary.json; '
                            'repeat for each sweep, in legend order. LABEL=DIR1,DIR2 pools '
                            'several folders into one sweep (e.g. one that extends another\'s '
                            '--tune range): their trials count together at each batch.')
  flags.DEFINE_string('out_dir', None, 'Folder for the combined summary and plots.')
  flags.DEFINE_float('target_accuracy', None, 'Eval accuracy for steps-to-target; default: the '
                     'sweeps\' own, when they agree.')


def main(argv: list[str]) -> None:
  args = flags.FLAGS
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; use --sweep=LABEL=DIR.')
  if not args.sweep or not args.out_dir:
    cli.fail('--sweep=LABEL=DIR (one or more) and --out_dir are required.')
  series, targets = {}, set()
  for value in args.sweep:
    label, _, sweep_dirs = value.partition('=')
    if not label or not sweep_dirs:
      cli.fail(f'--sweep={value}: expected LABEL=DIR, e.g. --sweep=LARS=runs/study/lars.')
    series[label] = []
    for sweep_dir in sweep_dirs.split(','):
      if not os.path.exists(os.path.join(sweep_dir, SUMMARY_JSON)):
        cli.fail(f'{os.path.join(sweep_dir, SUMMARY_JSON)} does not exist; run the sweep '
                 '(python -m lbtrain.sweep) to the end first.')
      runs, target = load_results(sweep_dir)
      series[label] += runs
      targets.add(target)
  target = args.target_accuracy
  if target is None and len(targets) > 1:
    cli.fail(f'the sweeps were summarised at different targets {sorted(targets, key=str)}; '
          'choose one with --target_accuracy.')
  target = target if target is not None else targets.pop()
  for path in write_report(args.out_dir, series, target):
    print(path)


def run() -> None:
  _define_flags()  # here, not at import: lbtrain.studies.sweep imports this module
  cli.run(main)


if __name__ == '__main__':
  run()
