"""Entry point: python -m cvqvae_jax.main --config=configs/NAME.py --workdir=DIR.

Thin by design (flax examples): flags, then a call into the library.
Several processes (a cluster, docs/cluster.md): add --distributed, or set
CVQVAE_DISTRIBUTED=1, in every process.
"""

import os
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

DISTRIBUTED_ENV = 'CVQVAE_DISTRIBUTED'  # '1': as --distributed (sbatch files)
flags.DEFINE_bool(
    'distributed', os.environ.get(DISTRIBUTED_ENV, '') not in ('', '0'),
    'Call jax.distributed.initialize() before anything else: one process '
    'per host or per accelerator (docs/cluster.md). Without '
    '--coordinator_address, --num_processes and --process_id, JAX reads them '
    'from the cluster (SLURM, Open MPI, TPU VMs) or from '
    f'JAX_COORDINATOR_ADDRESS. Default: ${DISTRIBUTED_ENV}=1 switches it on.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'Number of processes '
                     '(with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes '
                     '- 1 (with --coordinator_address).')

USER_ERRORS = train.USER_ERRORS  # A message, no traceback.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.distributed or FLAGS.coordinator_address:
    # Before any other JAX call (jax.devices() below creates the backends).
    try:
      jax.distributed.initialize(
          coordinator_address=FLAGS.coordinator_address,
          num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    except (ValueError, TypeError) as e:  # Not in a cluster, flags missing.
      print(f'error: --distributed: {e} (docs/cluster.md)', file=sys.stderr)
      sys.exit(1)
    if jax.process_index() > 0:  # Progress lines from process 0 only.
      logging.set_verbosity(logging.WARNING)
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
