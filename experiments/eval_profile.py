r"""Where the held-out evaluation's time goes (docs/performance.md).

Restores the parameters of a trained workdir and runs, in one process, what
a training run's evaluations do with them: `--curves` learning-curve
evaluations (evaluation.evaluate on eval.curve_examples test images), then
the final one (eval.num_examples), or with --paper the --mode=evaluate one
(evaluation.paper_evaluation; its classifiers are trained once into
WORKDIR/classifier/ if they are not there). Prints, per evaluation, its
seconds and the share of them inside each part (inclusive: a part's time
contains the parts it calls), the images each jitted program ran on (a
`_swap` image is two encodes and a decode), and the programs compiled; and
writes the results to --out (JSON) for a comparison of two versions of the
code. Parts and programs a version does not have are left out, so the
script runs on the code before and after a change.

  python experiments/eval_profile.py --workdir=/tmp/cvqvae --curves=2 \
      --out=/tmp/eval_after.json

Only the shares within one run compare on a shared machine.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
from cvqvae_jax import api
from cvqvae_jax import checkpointing
from cvqvae_jax import compile_cache
from cvqvae_jax import evaluation
from cvqvae_jax import leakage
from cvqvae_jax import manipulate
from cvqvae_jax import metrics
from cvqvae_jax import models
from cvqvae_jax import profiling
from cvqvae_jax import train
from cvqvae_jax.data import pipeline
from cvqvae_jax.data import procedural
# pylint: enable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained workdir.')
_CURVES = flags.DEFINE_integer('curves', 1, 'Curve evaluations first.')
_PAPER = flags.DEFINE_bool('paper', False, 'paper_evaluation instead of '
                           'the training run\'s final evaluate().')
_FINAL = flags.DEFINE_bool('final', True, 'The final (or --paper) '
                           'evaluation after the curves.')
_OUT = flags.DEFINE_string('out', '', 'Write the results here (JSON).')

# Parts timed: (module, attribute). Whatever exists in this version.
PARTS = (
    (evaluation, '_collect'), (pipeline, 'create_eval_dataset'),
    (procedural, 'render'), (evaluation, 'encode_examples'),
    (evaluation, 'swap_fakes'), (evaluation, 'swap_fakes_without_c'),
    (evaluation, '_swapped_decodes'), (evaluation, 'oracle_errors'),
    (evaluation, 'ideal_swaps'), (evaluation, 'posterior_errors'),
    (evaluation, 'leakage_results'),
    (leakage, 'leakage_metrics'), (leakage, 'probe_scores'),
    (leakage._FeatureRidge, '__init__'),  # pylint: disable=protected-access
    (metrics, 'batched'), (evaluation.classifier, 'load_or_train'))
# Jitted programs whose calls count forward passes (images in a batch).
PROGRAMS = ('encode', 'decode', '_swap', 'eval_step',
            'posterior_reconstructions', 'evaluation_pass', 'decode_errors',
            'predict_labels')


class Timer:
  """Inclusive seconds and calls of wrapped functions."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.calls = collections.Counter()
    self.images = collections.Counter()

  def wrap(self, name, fn, count_images=False):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      start = time.perf_counter()
      try:
        out = fn(*args, **kwargs)
        if count_images:
          jax.block_until_ready(out)
        return out
      finally:
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1
        if count_images:
          self.images[name] += _batch(args)
    return wrapper

  def reset(self):
    self.seconds.clear()
    self.calls.clear()
    self.images.clear()

  def report(self, total: float) -> str:
    lines = [f'{"part":34s} {"calls":>7s} {"share":>7s} {"images":>8s}']
    for name, s in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
      images = self.images.get(name, '')
      lines.append(f'{name:34s} {self.calls[name]:7d} {s / total:7.1%} '
                   f'{images:>8}')
    return '\n'.join(lines)


def _batch(args) -> int:
  for a in args[1:]:
    leaves = jax.tree.leaves(a)
    if leaves and hasattr(leaves[0], 'shape') and leaves[0].ndim:
      return int(leaves[0].shape[0])
  return 0


def _install(timer: Timer) -> None:
  for module, name in PARTS:
    if hasattr(module, name):
      setattr(module, name, timer.wrap(f'{module.__name__.split(".")[-1]}.'
                                       f'{name}', getattr(module, name)))
  original_jitted = manipulate.jitted.__wrapped__
  original_steps = evaluation._jitted_steps.__wrapped__  # pylint: disable=protected-access

  @functools.lru_cache(maxsize=16)
  def jitted(model):
    fns = dict(original_jitted(model))
    return {k: (timer.wrap(f'program {k}', f, count_images=True)
                if k in PROGRAMS else f) for k, f in fns.items()}

  @functools.lru_cache(maxsize=16)
  def steps(model):
    fns = dict(original_steps(model))
    return {k: (timer.wrap(f'program {k}', f, count_images=True)
                if k in PROGRAMS else f) for k, f in fns.items()}

  manipulate.jitted = jitted
  evaluation._jitted_steps = steps  # pylint: disable=protected-access


def _params(workdir, config):
  setup = train.build(config)
  flat, source = checkpointing.restore_params(
      workdir, setup.abstract_state.params,
      description=models.description(config, setup.image_shape))
  return setup.model, checkpointing.unflatten(flat), source['step']


def main(argv):
  del argv
  compile_cache.enable()
  timer = Timer()
  _install(timer)
  config = api.load_config(_WORKDIR.value)
  model, params, step = _params(_WORKDIR.value, config)
  codec = evaluation.Codec(model)
  out = {}
  runs = [('curve', config.eval.curve_examples)] * _CURVES.value
  if _FINAL.value:
    runs.append(('paper' if _PAPER.value else 'final', None))
  for i, (kind, n) in enumerate(runs):
    timer.reset()
    start = time.perf_counter()
    with profiling.Compilations() as compiled:
      if kind == 'paper':
        results = evaluation.paper_evaluation(params, model, config,
                                              _WORKDIR.value, step)
      else:
        results = evaluation.evaluate(params, model, config, codec,
                                      num_examples=n)
    total = time.perf_counter() - start
    out[f'{i}_{kind}'] = results
    print(f'\n== {kind} evaluation {i} ({n or config.eval.num_examples} '
          f'examples): {total:.1f} s, {compiled.total} compilations '
          f'({compiled.cache_hits} cache reads, '
          f'{sum(compiled.seconds.values()):.1f} s = '
          f'{sum(compiled.seconds.values()) / total:.1%})')
    print(timer.report(total))
    print(compiled.table())
    passes = {k[len('program '):]: v for k, v in timer.images.items()}
    print('forward passes (images):', dict(sorted(passes.items())))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(out, f, indent=1, sort_keys=True)
    print(f'Wrote {_OUT.value}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
