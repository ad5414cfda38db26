r"""Resident memory of a training run, step by step (docs/reliability.md).

Trains in this process and records the process's resident set (VmRSS, from
/proc/self/status) every time the loop logs (log_every_steps), beside the
step, in WORKDIR/memory.jsonl; at the end it prints the RSS after warm-up,
at the end, the growth between them and its rate per 1000 steps. Every
part of a run is in it: the metrics history, the held-out curves
(eval_every_steps), the checkpoints and the grain iterator.

  python experiments/memory_flat.py --config=configs/default.py \
      --workdir=/tmp/memory --config.num_train_steps=3000 \
      --config.log_every_steps=50

Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from cvqvae_jax import metric_writers  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A new directory for the run.')
flags.DEFINE_float('warmup_fraction', 0.2, 'Part of the run before the '
                   'baseline sample (compilation, buffers, caches).')
config_flags.DEFINE_config_file('config', None, 'Training configuration.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def rss_mib() -> float:
  """The resident set of this process in MiB."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
  raise RuntimeError('No VmRSS in /proc/self/status.')


def record_rss(samples: list[tuple[int, float]], path: str | None = None):
  """Wraps MetricWriter.write to append (step, RSS) at every training log
  record (and a JSON line to `path` if given). Returns the original, to put
  back."""
  original = metric_writers.MetricWriter.write

  def write(self, step, metrics):
    if 'loss' in metrics:
      samples.append((int(step), rss_mib()))
      if path:
        with open(path, 'a') as f:
          f.write(json.dumps({'step': samples[-1][0],
                              'rss_mib': round(samples[-1][1], 1)}) + '\n')
    return original(self, step, metrics)
  metric_writers.MetricWriter.write = write
  return original


def summarise(samples: list[tuple[int, float]], warmup_fraction: float
              ) -> dict[str, float]:
  """RSS after warm-up and at the end, growth and its rate per 1000 steps."""
  last_step = samples[-1][0]
  after = [s for s in samples if s[0] >= warmup_fraction * last_step]
  (step0, rss0), (step1, rss1) = after[0], samples[-1]
  return {'warmup_step': step0, 'rss_after_warmup_mib': rss0,
          'last_step': step1, 'rss_at_end_mib': rss1,
          'max_rss_after_warmup_mib': max(r for _, r in after),
          'growth_mib': rss1 - rss0,
          'growth_mib_per_1000_steps': (rss1 - rss0) * 1000 / max(
              step1 - step0, 1)}


def main(argv):
  del argv
  samples: list[tuple[int, float]] = []
  os.makedirs(FLAGS.workdir, exist_ok=True)
  path = os.path.join(FLAGS.workdir, 'memory.jsonl')
  if os.path.exists(path):
    os.remove(path)
  original = record_rss(samples, path)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  finally:
    metric_writers.MetricWriter.write = original
  summary = summarise(samples, FLAGS.warmup_fraction)
  print('Resident memory: ' + ', '.join(
      f'{k} {v:.1f}' if isinstance(v, float) else f'{k} {v}'
      for k, v in summary.items()), flush=True)


if __name__ == '__main__':
  app.run(main)
