"""The advisor's model: from one measured run to a predicted time to the target at each batch.

B_crit ~ B_simple (the gradient noise scale when the target was reached), S(B) = S_min (1 +
B_crit / B) through the measured S(B0), the examples E(B) = S(B) B, the time T(B) = S(B) / steps
per second(B), and the training efficiency E_min / E(B) = 1 / (1 + B / B_crit) (1 = perfect
scaling); `lbtrain.studies.advise` measures the inputs and prints the result.

Warmup: the model assumes each batch trains to the target as the measured run did, which spent
a share of its steps to the target warming up (its warmup steps / its steps to the target, at
most all of them). A candidate whose config warmup would be a larger share of its predicted
steps (at small batches a warmup in epochs is many steps, and may outlast the predicted run) is
given that share of its predicted steps instead: `fitted_warmup_steps`, never longer than the
config's, which the recommendations state with the overrides that set it.
"""

import dataclasses
import math
from typing import Sequence

from lbtrain import durations
from lbtrain.errors import UserError
from lbtrain.studies import results

# Default candidates: powers of 2 over this factor either side of the measured B_crit, which
# spans the model's regimes (efficiency 89 % at B_crit / 8, 11 % at 8 B_crit).
_CANDIDATE_SPAN = 8

ASSUMPTIONS = (
    'This is a prediction from a model, not a measurement of steps to the target at each batch. '
    'It assumes (1) steps to the target follow S(B) = S_min (1 + B_crit / B) (McCandlish et al. '
    '2018); (2) B_crit equals the gradient noise scale B_simple measured when the target was '
    'reached (they find the two within a small factor, and B_simple grows as the loss falls); (3) '
    'the config\'s lr scaling rule serves every batch as well as the measured one (the lr is not '
    'retuned), with a warmup no longer than the measured run\'s share of its steps; (4) the '
    'short throughput runs\' speed holds for a whole run. A tuned `python -m lbtrain.sweep '
    '--tune=...` measures S(B) itself.')


@dataclasses.dataclass(frozen=True)
class Measurement:
  """What the run at the config's own batch measured."""
  global_batch_size: int
  steps_to_target: int
  noise_scale: float  # B_simple when the target was reached
  # (step, B_simple) of every positive record up to the target: how the noise scale grew.
  noise_scale_curve: tuple[tuple[int, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One batch's row of the advice."""
  global_batch_size: int
  peak_lr: float
  warmup_steps: int  # the config's rules at this batch
  fitted_warmup_steps: int  # at most the measured run's warmup share of the predicted steps
  steps: float  # predicted steps to the target
  examples: float  # predicted examples to the target
  epochs: float
  efficiency: float  # E_min / E: the share of perfect scaling kept
  steps_per_second: float | None  # measured; None: the throughput run measured nothing
  seconds: float | None  # predicted training time to the target


@dataclasses.dataclass(frozen=True)
class Advice:
  measurement: Measurement
  b_crit: float
  s_min: float
  e_min: float
  warmup_share: float  # the measured run's warmup steps / its steps to the target, at most 1
  efficiency_floor: float
  candidates: tuple[Candidate, ...]
  fastest: int | None  # the batch predicted fastest to the target; None: no throughput
  efficient: int | None  # the largest keeping the efficiency floor; None: none does
  # (first epoch, batch) of each segment of the batch schedule it suggests (`growing_batches`).
  schedule: tuple[tuple[float, int], ...] = ()

  def as_dict(self) -> dict:
    return dict(dataclasses.asdict(self), assumptions=ASSUMPTIONS)


def advise(measurement: Measurement, throughput: dict[int, float | None],
           recipes: dict[int, tuple[float, int]], num_train_examples: int,
           efficiency_floor: float) -> Advice:
  """The model's prediction for each candidate batch.

  Args:
    measurement: steps to the target and B_simple at the config's batch.
    throughput: candidate batch -> measured training steps per second (None: not measured).
    recipes: candidate batch -> (peak lr, warmup steps) from the config's rules.
    num_train_examples: the training split's size, for epochs.
    efficiency_floor: E_min / E(B) the efficient recommendation keeps at least.
  """
  b_crit = measurement.noise_scale
  s_min = measurement.steps_to_target / (1 + b_crit / measurement.global_batch_size)
  e_min = s_min * b_crit
  measured_warmup = recipes[measurement.global_batch_size][1]
  warmup_share = min(measured_warmup, measurement.steps_to_target) / measurement.steps_to_target
  candidates = []
  for batch in sorted(throughput):
    steps = s_min * (1 + b_crit / batch)
    rate = throughput[batch]
    peak_lr, warmup_steps = recipes[batch]
    candidates.append(Candidate(
        global_batch_size=batch, peak_lr=peak_lr, warmup_steps=warmup_steps,
        fitted_warmup_steps=min(warmup_steps, durations.to_steps(warmup_share, steps)),
        steps=steps,
        examples=steps * batch, epochs=steps * batch / num_train_examples,
        efficiency=e_min / (steps * batch), steps_per_second=rate,
        seconds=steps / rate if rate else None))
  timed = [c for c in candidates if c.seconds is not None]
  efficient = [c.global_batch_size for c in candidates if c.efficiency >= efficiency_floor]
  return Advice(measurement=measurement, b_crit=b_crit, s_min=s_min, e_min=e_min,
                warmup_share=warmup_share, efficiency_floor=efficiency_floor,
                candidates=tuple(candidates),
                fastest=min(timed, key=lambda c: c.seconds).global_batch_size if timed else None,
                efficient=max(efficient, default=None),
                schedule=growing_batches(measurement, sorted(throughput), num_train_examples,
                                         efficiency_floor))


def growing_batches(measurement: Measurement, batches: Sequence[int], num_train_examples: int,
                    efficiency_floor: float) -> tuple[tuple[float, int], ...]:
  """A batch that grows with the noise scale (McCandlish et al. 2018): at each point of the
  measured run, the largest candidate that would keep `efficiency_floor` of perfect scaling if
  B_crit were the B_simple measured there (B <= B_simple (1 / floor - 1)), never smaller than
  the smallest candidate nor than the batch before; (first epoch, batch) per segment, epochs
  of the measured run rounded to 0.01. Empty without a noise-scale curve."""
  schedule: list[tuple[float, int]] = []
  for step, value in measurement.noise_scale_curve:
    fitting = [b for b in batches if b <= value * (1 / efficiency_floor - 1)]
    batch = max(fitting or batches[:1])
    epoch = round(step * measurement.global_batch_size / num_train_examples, 2)
    if not schedule:
      schedule.append((0.0, batch))
    elif batch > schedule[-1][1] and epoch > schedule[-1][0]:
      schedule.append((epoch, batch))
  return tuple(schedule)


def _schedule_text(advice: Advice) -> str:
  """The suggested batch schedule as words and the overrides that set it."""
  if not advice.schedule:
    return 'schedule: none: the measurement run recorded no noise scale to grow a batch with.'
  floor = f'{100 * advice.efficiency_floor:.0f} %'
  segments = ', '.join(f'{batch} from epoch {epoch:g}' for epoch, batch in advice.schedule)
  if len(advice.schedule) == 1:
    return (f'schedule: one batch, {advice.schedule[0][1]}: along the measured run the noise '
            f'scale never called for a larger candidate (keeping {floor} of perfect scaling).')
  first, rest = advice.schedule[0][1], advice.schedule[1:]
  return (f'schedule (suggested, not measured): a batch that grows with the noise scale, the '
          f'largest candidate keeping {floor} of perfect scaling at the B_simple measured along '
          f'the run: {segments}, the lr by the config\'s scaling rule at each batch: '
          f'--config.train.global_batch_size={first} '
          f"--config.train.batch_schedule.batch_sizes='({','.join(str(b) for _, b in rest)},)' "
          f"--config.train.batch_schedule.boundaries_epochs="
          f"'({','.join(f'{e:g}' for e, _ in rest)},)'")


def _warmup_text(c: Candidate, share: float) -> str:
  """The candidate's warmup, and when it is shorter than the config's, why and how to set it."""
  if c.fitted_warmup_steps == c.warmup_steps:
    return f'{c.warmup_steps} warmup steps (the config\'s)'
  return (f'{c.fitted_warmup_steps} warmup steps, {100 * share:.0f} % of the predicted steps as '
          f'in the measured run, not the config\'s {c.warmup_steps}: '
          f'--config.schedule.warmup_epochs=None '
          f'--config.schedule.warmup_steps={c.fitted_warmup_steps}')


def report(advice: Advice, target: float) -> str:
  """The table and the two 'recommend' lines."""
  m = advice.measurement
  share = f'{100 * advice.warmup_share:.0f} %'
  lines = [
      f'Measured at batch {m.global_batch_size}: eval accuracy {target:g} at step '
      f'{m.steps_to_target}, gradient noise scale B_simple = {m.noise_scale:,.0f} there; '
      f'warmup was {share} of those steps.',
      f'Model: B_crit ~ B_simple = {advice.b_crit:,.0f}, S_min = {advice.s_min:,.1f} steps, '
      f'E_min = {advice.e_min:,.0f} examples.', '',
      '| batch | peak lr | warmup steps | predicted steps | predicted examples | epochs | '
      'efficiency | steps per second (measured) | predicted time to target |',
      '|' + '---|' * 9]
  shortened = [c.global_batch_size for c in advice.candidates
               if c.fitted_warmup_steps < c.warmup_steps]
  for c in advice.candidates:
    warmup = (f'{c.warmup_steps} → {c.fitted_warmup_steps} *'
              if c.global_batch_size in shortened else str(c.warmup_steps))
    lines.append(
        f'| {c.global_batch_size} | {c.peak_lr:.4g} | {warmup} | {c.steps:,.0f} | '
        f'{c.examples:,.0f} | {c.epochs:.2f} | {100 * c.efficiency:.0f} % | '
        f'{"not measured" if c.steps_per_second is None else f"{c.steps_per_second:.3g}"} | '
        f'{"–" if c.seconds is None else f"{c.seconds:,.1f} s"} |')
  by_batch = {c.global_batch_size: c for c in advice.candidates}
  if shortened:
    lines += ['', f'* The config\'s warmup would be more than {share} of the predicted steps at '
                  f'batch {", ".join(map(str, shortened))} (the lr still rising where the '
                  'measured run\'s had peaked); the prediction assumes the warmup after the '
                  f'arrow, {share} of the predicted steps, as in the measured run.']
  lines.append('')
  if advice.fastest is None:
    lines.append('recommend (fastest): none: no candidate\'s throughput was measured.')
  else:
    c = by_batch[advice.fastest]
    lines.append(f'recommend (fastest): global batch {c.global_batch_size}: predicted '
                 f'{c.seconds:,.1f} s of training to {target:g} ({c.steps:,.0f} steps, peak lr '
                 f'{c.peak_lr:.4g}, {_warmup_text(c, advice.warmup_share)}).')
  floor = f'{100 * advice.efficiency_floor:.0f} %'
  if advice.efficient is None:
    lines.append(f'recommend (efficient): none of the candidates keeps {floor} of perfect '
                 f'scaling (B <= {advice.b_crit * (1 / advice.efficiency_floor - 1):,.0f} '
                 'would); add smaller --batch_sizes.')
  else:
    c = by_batch[advice.efficient]
    lines.append(f'recommend (efficient): global batch {c.global_batch_size}: the largest that '
                 f'keeps >= {floor} of perfect scaling ({100 * c.efficiency:.0f} %: '
                 f'{c.examples:,.0f} examples vs E_min {advice.e_min:,.0f}; {c.steps:,.0f} '
                 f'steps, peak lr {c.peak_lr:.4g}, {_warmup_text(c, advice.warmup_share)}).')
  lines += [_schedule_text(advice), '', ASSUMPTIONS]
  return '\n'.join(lines) + '\n'


def measurement_from_records(records: Sequence[dict], global_batch_size: int,
                             target: float) -> Measurement | None:
  """Steps to the target and B_simple then; None if the run never reached the target."""
  steps = results.steps_to(results.eval_points(records), target)
  if steps is None:
    return None
  curve = [(step, value) for step, value in results.eval_points(records, 'train/noise_scale')
           if step <= steps]
  if not curve or not curve[-1][1] > 0:
    raise UserError(f'the run at batch {global_batch_size} reached {target:g} at step {steps} '
                    'before any positive noise-scale estimate; its EMA needs more steps: lower '
                    '--config.train.noise_scale_decay or raise the target.')
  return Measurement(global_batch_size=global_batch_size, steps_to_target=steps,
                     noise_scale=curve[-1][1],
                     noise_scale_curve=tuple(point for point in curve if point[1] > 0))


def throughput_from_records(records: Sequence[dict]) -> float | None:
  """Training steps per second: the median over the records after the first."""
  return results.median_steps_per_second(
      [r for r in records if 'train/steps_per_sec' in r][1:])


def default_batches(b_crit: float, global_batch_size: int, num_devices: int) -> list[int]:
  """The config's batch and the powers of 2 from B_crit / 8 to 8 B_crit, those that every
  device gets a share of."""
  low = math.floor(math.log2(max(b_crit / _CANDIDATE_SPAN, 1)))
  high = math.ceil(math.log2(max(b_crit * _CANDIDATE_SPAN, 1)))
  return sorted({global_batch_size} | {2 ** k for k in range(low, high + 1)
                                       if 2 ** k % num_devices == 0})
