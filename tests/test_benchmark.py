"""The benchmark's JSON record (docs/results.md, "Speed")."""

import numpy as np

from cvqvae_jax import benchmark

from conftest import tiny_config

KEYS = ('img_per_s', 'step_ms_median', 'gflop_per_step', 'achieved_gflops',
        'matmul_peak_gflops', 'utilization', 'compile_s', 'peak_rss_mb',
        'devices', 'platform')


def test_benchmark_record_is_complete_and_consistent():
  record = benchmark.run(tiny_config(), steps=3)
  assert set(KEYS) <= set(record)
  assert record['platform'] == 'cpu' and record['devices'] >= 1
  np.testing.assert_allclose(record['img_per_s'],
                             8 / (record['step_ms_median'] / 1000), rtol=1e-6)
  assert record['gflop_per_step'] > 0
  np.testing.assert_allclose(
      record['achieved_gflops'],
      record['gflop_per_step'] / (record['step_ms_median'] / 1000), rtol=1e-6)
  np.testing.assert_allclose(
      record['utilization'],
      record['achieved_gflops'] / record['matmul_peak_gflops'], rtol=1e-6)
  assert 0 < record['utilization'] < 1
  assert record['compile_s'] > 0 and record['peak_rss_mb'] > 50
