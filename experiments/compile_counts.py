r"""How many programs a run compiles, and which (docs/performance.md).

Runs cvqvae_jax.main in this process (the same flags) and prints, at the
end, every jitted function that XLA compiled: how often, and the seconds
it took. A function compiled more than once per shape is a cache that
does not hold (a new jax.jit per call, a closure over new values). Set
CVQVAE_JAX_CACHE_DIR=0 to count compilations without the persistent cache
(with it, the seconds of a second run are the cache's reads).

  CVQVAE_JAX_CACHE_DIR=0 python experiments/compile_counts.py \
      --config=configs/default.py --workdir=/tmp/counts \
      --config.num_train_steps=4 --config.eval_every_steps=2 \
      --config.data.num_test=200 --config.eval.num_examples=200 \
      --config.eval.curve_examples=100 --config.eval.num_pairs=50
"""

from __future__ import annotations

import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from cvqvae_jax import main as cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax import profiling  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv):
  compiled = profiling.Compilations()
  try:
    with compiled:
      cli.main(argv)
  finally:
    print(f'Compilations: {compiled.total} ({compiled.cache_hits} read from '
          f'the persistent cache), {sum(compiled.seconds.values()):.1f} s:')
    print(compiled.table(), flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=cli._parse_flags)  # pylint: disable=protected-access
