r"""The train step on an accelerator: images/s and the share of a matmul's
throughput for the default and the paper configs, in float32 and bfloat16.

One prepared run for a GPU or TPU machine (about 5 minutes on one GPU; each
measurement in its own process). Prints one JSON line per measurement and a
markdown table, which `--out` also writes (for docs/performance.md):

  python experiments/accelerator_benchmark.py --out=/tmp/accelerator.md

Not part of the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ('configs/default.py', 'configs/celeba_glasses.py')


def _measure(config: str, dtype: str, steps: int) -> dict:
  cmd = [sys.executable, '-m', 'cvqvae_jax.benchmark', f'--config={config}',
         f'--config.dtype={dtype}', f'--steps={steps}']
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=900, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
  if proc.returncode or not lines:
    return {'config': config, 'dtype': dtype, 'error':
            (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
  return {'config_file': config, **json.loads(lines[-1])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--out', default='')
  parser.add_argument('--configs', default=','.join(CONFIGS),
                      help='Comma-separated config files.')
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  header = (f'{datetime.date.today()}, {device.platform} '
            f'{getattr(device, "device_kind", "")} x {jax.device_count()}, '
            f'jax {jax.__version__}')
  rows = []
  for config in args.configs.split(','):
    for dtype in ('float32', 'bfloat16'):
      record = _measure(config, dtype, args.steps)
      print(json.dumps(record), flush=True)
      rows.append(record)
  table = [header, '',
           '| config | dtype | batch | images/s | step (ms) | GFLOP/step | '
           'achieved GFLOP/s | matmul GFLOP/s (same dtype) | share | compile (s) |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    if 'error' in r:
      table.append(f'| {r["config"]} | {r["dtype"]} | failed: {r["error"]} '
                   '| | | | | | | |')
      continue
    table.append(
        f'| {r["config_file"]} | {r["dtype"]} | {r["batch_size"]} | '
        f'{r["img_per_s"]:.0f} | {r["step_ms_median"]:.1f} | '
        f'{r["gflop_per_step"]:.0f} | {r["achieved_gflops"]:.0f} | '
        f'{r["matmul_peak_gflops"]:.0f} | {r["utilization"]:.2f} | '
        f'{r["compile_s"]:.0f} |')
  text = '\n'.join(table) + '\n'
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
