"""The benchmark's JSON record (docs/results.md, "Speed")."""

import jax
import numpy as np

from cvqvae_jax import benchmark
from cvqvae_jax import train

from conftest import tiny_config

KEYS = ('img_per_s', 'step_ms_median', 'gflop_per_step', 'achieved_gflops',
        'matmul_peak_gflops', 'utilization', 'compile_s', 'peak_rss_mb',
        'devices', 'platform')


def _forward_gflop(config) -> float:
  """XLA's flop count of one forward pass of the model on a batch, counted
  here independently of the benchmark."""
  setup = train.build(config)
  params = setup.init(jax.random.key(0)).params
  batch = benchmark.synthetic_batch(config, setup.image_shape,
                                    np.random.default_rng(0))
  forward = jax.jit(lambda p, b: setup.model.apply(
      {'params': p}, b['image'], b['label'], b['labelled'], train=True,
      rngs={'sample': jax.random.key(1)})['x_hat'])
  cost = forward.lower(params, batch).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops']) / 1e9


def test_benchmark_record_is_complete_and_consistent():
  config = tiny_config()
  record = benchmark.run(config, steps=3)
  assert set(KEYS) <= set(record)
  assert record['platform'] == 'cpu' and record['devices'] >= 1
  assert record['batch_size'] == 8 and record['image_size'] == 16
  # A train step is a forward and a backward pass (about twice the forward's
  # work) plus Adam: between 2 and 4.5 forwards.
  ratio = record['gflop_per_step'] / _forward_gflop(config)
  assert 2.0 < ratio < 4.5, ratio
  assert 0 < record['utilization'] < 1
  assert record['compile_s'] > 0 and record['peak_rss_mb'] > 50
