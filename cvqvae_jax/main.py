"""Entry point: python -m cvqvae_jax.main --config=configs/NAME.py --workdir=DIR.

Thin by design (flax examples): flags, then a call into the library.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from cvqvae_jax import train

MODES = ('train', 'evaluate', 'figures')

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and '
                    'figures.')
flags.DEFINE_enum('mode', 'train', MODES, 'What to do with the workdir.')
config_flags.DEFINE_config_file('config', None, 'Training configuration.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])

USER_ERRORS = train.USER_ERRORS  # A message, no traceback.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.info('JAX process %d / %d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      train.run_offline(FLAGS.mode, FLAGS.config, FLAGS.workdir)
  except USER_ERRORS as e:
    logging.debug('Traceback of the error below:', exc_info=True)
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
