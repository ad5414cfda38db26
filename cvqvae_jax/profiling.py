"""A jax.profiler trace of chosen training steps (config.profile_steps).

The trace goes to WORKDIR/profile/ and opens in TensorBoard's profile plugin
(`tensorboard --logdir WORKDIR/profile`) or in Perfetto (the .trace.json.gz
file). Only process 0 traces.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time

from absl import logging
import jax


def profile_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'profile')


def parse_steps(steps) -> tuple[int, int] | None:
  """(first, last) of config.profile_steps, or None when it is (0, 0)."""
  try:
    first, last = (int(s) for s in steps)
  except (TypeError, ValueError):
    first = last = -1
  if (first, last) == (0, 0):
    return None
  if not 1 <= first <= last:
    raise ValueError(
        f'config.profile_steps must be (first, last) training steps with '
        f'1 <= first <= last, or (0, 0) for no trace; got {steps!r}.')
  return first, last


class StepTrace:
  """Starts a trace before step `first` and stops it after step `last`;
  each traced step is marked (TensorBoard's step view).

  A run resumed past `first` is not traced. The first step of a run
  compiles: trace later steps to see the step itself.
  """

  def __init__(self, workdir: str, steps, enabled: bool = True):
    self._steps = parse_steps(steps)
    self._dir = profile_dir(workdir)
    self._enabled = enabled and self._steps is not None
    self._active = False
    self._annotation = None

  def before(self, step: int) -> None:
    """Call before step `step` is dispatched."""
    if self._enabled and step == self._steps[0]:
      os.makedirs(self._dir, exist_ok=True)
      jax.profiler.start_trace(self._dir)
      self._active = True
      logging.info('Tracing steps %d-%d into %s.', *self._steps, self._dir)
    if self._active:
      self._annotation = jax.profiler.StepTraceAnnotation('train',
                                                          step_num=step)
      self._annotation.__enter__()

  def after(self, step: int, outputs) -> None:
    """Call after step `step` is dispatched, with its outputs."""
    if not self._active:
      return
    if step == self._steps[1]:
      jax.block_until_ready(outputs)  # The last step's work in the trace.
    self._annotation.__exit__(None, None, None)
    self._annotation = None
    if step == self._steps[1]:
      self.close()

  def close(self) -> None:
    if self._annotation is not None:
      self._annotation.__exit__(None, None, None)
      self._annotation = None
    if self._active:
      jax.profiler.stop_trace()
      self._active = False
      logging.info('Wrote the profile of steps %d-%d to %s.', *self._steps,
                   self._dir)


class WallTime:
  """Where a run's wall time went: compilation and initialisation, training
  steps, held-out evaluation (the end-of-run summary's line)."""

  PHASES = ('training steps', 'compilation and initialisation',
            'held-out evaluation')

  def __init__(self):
    self.reset()

  def reset(self) -> None:
    self.start = time.perf_counter()
    self.seconds = dict.fromkeys(self.PHASES, 0.0)

  def add(self, phase: str, seconds: float) -> None:
    self.seconds[phase] += seconds

  @contextlib.contextmanager
  def timed(self, phase: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(phase, time.perf_counter() - start)

  def line(self) -> str:
    total = time.perf_counter() - self.start
    parts = [f'{name} {s:.0f} s' for name, s in self.seconds.items()]
    other = total - sum(self.seconds.values())
    return (f'Wall time {total:.0f} s: ' + ', '.join(parts)
            + f', other (data, checkpoints, previews) {max(other, 0):.0f} s.')


# The current run's (train.train_and_evaluate resets it).
WALL = WallTime()


# jax.monitoring's event around every XLA compilation of a jitted function
# (or its read from the persistent compilation cache), with its name.
BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


class Compilations:
  """The programs JAX compiles inside a `with Compilations() as c:` block:
  c.counts[name] (compilations of the jitted function `name`, each one a
  new shape, function or compiler option), c.seconds[name], and c.cache_hits
  (how many of them the persistent compilation cache answered).

    with profiling.Compilations() as compiled:
      evaluation.evaluate(params, model, config, codec)
    print(compiled.counts.most_common())
  """

  def __init__(self):
    self.counts: collections.Counter = collections.Counter()
    self.seconds: dict[str, float] = collections.defaultdict(float)
    self.cache_hits = 0
    self.order: list[tuple[str, float]] = []  # (name, seconds), in order

  def _on_duration(self, event: str, seconds: float, **kwargs) -> None:
    if event == BACKEND_COMPILE_EVENT:
      name = str(kwargs.get('fun_name', '?'))
      self.counts[name] += 1
      self.seconds[name] += seconds
      self.order.append((name, seconds))

  def _on_event(self, event: str, **_) -> None:
    if event == CACHE_HIT_EVENT:
      self.cache_hits += 1

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def __enter__(self) -> 'Compilations':
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *_) -> None:
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)

  def table(self) -> str:
    """One line per function, most compiled first: count, seconds, name."""
    return '\n'.join(f'{n:4d} {self.seconds[name]:8.1f} s  {name}'
                     for name, n in self.counts.most_common())
