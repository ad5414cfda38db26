r"""Where the train step's time goes: a jax.profiler trace, summed per kind of op.

Compiles the train step of a config (as `cvqvae_jax.benchmark` does, on a
synthetic batch), traces `--steps` steps after two warm-up steps, and sums
the duration of every XLA op of the step in the trace, by kind: the ops that
contain a convolution, a dot, a reduction, copies/transposes, other
(elementwise) fusions. Prints one JSON line: op time per step (summed over
the threads that run ops in parallel, so it can exceed the wall time), the
share of each kind and the step's wall time (median of two untraced steps);
then the `--top` slowest ops with the convolution they contain. Not part of
the tests.

What the trace sees: convolutions in YNNPACK fusions (XLA's default on CPU)
appear as ops; XLA's own Eigen convolutions (xla_options on CPU) run in its
intra-op thread pool and appear only with
XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true, and then only as the short
call that starts them. With them, the convolutions' time is the wall time
less that of the ops traced (docs/performance.md).

  python experiments/step_profile.py --config=configs/celeba_glasses.py \
      --config.batch_size=8 --steps=2
  CVQVAE_JAX_XLA_DEFAULTS=1 python experiments/step_profile.py ...   # XLA's defaults

The trace stays in `--trace_dir` (TensorBoard's profile plugin, Perfetto).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cvqvae_jax import benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax import xla_options  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS  # --config and --steps come from cvqvae_jax.benchmark.
flags.DEFINE_string('trace_dir', '', 'Where the trace goes (default: a '
                    'fresh temporary folder).')
flags.DEFINE_integer('top', 10, 'How many of the slowest ops to list.')

_OP = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(')
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$')
_CALLS = re.compile(r'(?:calls|to_apply|body|condition)=%?([\w.\-]+)')


def op_kinds(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (kind, its convolution's HLO line or '')."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    m = _COMPUTATION.match(line)
    if m:
      current = m.group(1)
      computations[current] = []
    elif current and (m := _OP.match(line)):
      computations[current].append((m.group(1), m.group(2), line))

  def contents(opcode, line, seen):
    """Opcodes of an instruction and of what it calls, and its first
    convolution's HLO line."""
    ops = {opcode}
    conv = re.sub(r', metadata=.*', '', line.strip()) if (
        opcode == 'convolution') else ''
    for called in _CALLS.findall(line):
      if called in seen:
        continue
      for _, sub_opcode, sub_line in computations.get(called, ()):
        sub_ops, sub_conv = contents(sub_opcode, sub_line, seen | {called})
        ops |= sub_ops
        conv = conv or sub_conv
    return ops, conv

  kinds = {}
  for instructions in computations.values():
    for name, opcode, line in instructions:
      ops, conv = contents(opcode, line, frozenset())
      if 'convolution' in ops:
        kind = 'convolution'
      elif 'dot' in ops:
        kind = 'dot'
      elif ops <= {'copy', 'transpose', 'parameter', 'bitcast', 'fusion'}:
        kind = 'copy/transpose'
      elif ops & {'reduce', 'reduce-window'}:
        kind = 'reduce'
      else:
        kind = 'elementwise and other'
      kinds[name] = (kind, conv)
  return kinds


def main(argv):
  del argv
  config = FLAGS.config
  setup = train.build(config)
  state = train.jit_init(setup)(jax.random.key(0))
  step = train.jit_train_step(setup, config.objective)
  batch = sharding.put_batch(
      benchmark.synthetic_batch(config, setup.image_shape,
                                np.random.default_rng(0)),
      setup.batch_sharding)
  rng = jax.random.key(1)
  kinds = op_kinds(step.lower(state, batch, rng).compile().as_text())
  times = []
  for _ in range(3):
    t = time.perf_counter()
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  step_ms = 1000 * float(np.median(times[1:]))
  trace_dir = FLAGS.trace_dir or tempfile.mkdtemp(prefix='step_profile_')
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(FLAGS.steps):
      state, metrics = step(state, batch, rng)
      jax.block_until_ready(metrics)
  trace = max(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'),
                        recursive=True), key=os.path.getmtime)
  events = json.load(gzip.open(trace))
  events = events['traceEvents'] if isinstance(events, dict) else events
  by_kind, by_op = collections.Counter(), collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and e.get('name') in kinds:
      by_kind[kinds[e['name']][0]] += e.get('dur', 0)
      by_op[e['name']] += e.get('dur', 0)
  total = sum(by_kind.values())
  if not total:
    raise SystemExit(f'No op of the step found in the trace {trace}.')
  print(json.dumps({
      'image_size': setup.image_shape[0], 'batch_size': config.batch_size,
      'dtype': config.get('dtype', 'float32'),
      'xla_options': xla_options.compiler_options(),
      'step_ms': step_ms,
      'op_ms_per_step': total / 1e3 / FLAGS.steps,
      'share': {k: round(v / total, 4) for k, v in by_kind.most_common()},
      'trace': trace}), flush=True)
  for name, us in by_op.most_common(FLAGS.top):
    kind, conv = kinds[name]
    print(f'{us / 1e3 / FLAGS.steps:9.1f} ms/step  {kind:12s} {name}  '
          f'{conv[:150]}', flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
