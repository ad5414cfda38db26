"""Speed of the train step: python -m cvqvae_jax.benchmark --config=...

Prints one JSON line (docs/results.md, "Speed"): img_per_s, step_ms_median,
gflop_per_step (XLA's count for the compiled step), achieved_gflops,
matmul_peak_gflops (a 2048 x 2048 matmul on CPU, 8192 x 8192 on
accelerators, in the config's dtype, measured in the same run), utilization
(achieved / peak), dtype, compile_s, peak_rss_mb, devices, platform.
The step runs on synthetic batches of the config's shape, so the input
pipeline is not timed (its throughput is measured separately).
"""

from __future__ import annotations

import json
import resource
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from cvqvae_jax import cli
from cvqvae_jax import sharding
from cvqvae_jax import train
from cvqvae_jax.models import layers

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.',
                                lock_config=True)
flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step).')


def matmul_peak_gflops(n: int = 2048, repeats: int = 5,
                       dtype=jnp.float32) -> float:
  """Best-of-`repeats` n x n matmul throughput in `dtype` on device 0."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best / 1e9 * jax.local_device_count()


def synthetic_batch(config, image_shape, rng: np.random.Generator) -> dict:
  b, num_labels = config.batch_size, len(config.data.labels)
  return {
      'image': rng.uniform(-1, 1, (b, *image_shape)).astype(np.float32),
      'label': rng.integers(0, 2, (b, num_labels)).astype(np.int32),
      'labelled': rng.random((b, num_labels)) < config.data.supervision_rate,
  }


def run(config, steps: int = 20) -> dict:
  """Compiles and times the train step; returns the JSON record."""
  setup = train.build(config)
  image_shape = setup.image_shape
  state = train.jit_init(setup)(jax.random.key(0))
  step_fn = train.jit_train_step(setup, config.objective)
  batch = sharding.put_batch(
      synthetic_batch(config, image_shape, np.random.default_rng(0)),
      setup.batch_sharding)
  rng = jax.random.key(1)

  t = time.perf_counter()
  compiled = step_fn.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  gflop = float(cost.get('flops', 0.0)) / 1e9 if cost else float('nan')

  state, metrics = compiled(state, batch, rng)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  step_s = float(np.median(times))
  dtype = config.get('dtype', 'float32')
  # Large enough on an accelerator for the matmul to reach its peak.
  size = 2048 if jax.default_backend() == 'cpu' else 8192
  peak = matmul_peak_gflops(size, dtype=layers.compute_dtype(dtype))
  achieved = gflop / step_s
  return {
      'config': config.model.name,
      'image_size': image_shape[0],
      'batch_size': config.batch_size,
      'img_per_s': config.batch_size / step_s,
      'step_ms_median': 1000 * step_s,
      'gflop_per_step': gflop,
      'achieved_gflops': achieved,
      'matmul_peak_gflops': peak,
      'utilization': achieved / peak,
      'dtype': dtype,
      'compile_s': compile_s,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'devices': jax.device_count(),
      'platform': jax.devices()[0].platform,
  }


def main(argv):
  del argv
  with cli.exit_on_user_error():
    print(json.dumps(run(FLAGS.config, FLAGS.steps)), flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
