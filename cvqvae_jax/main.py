"""Trains, evaluates or draws the figures of CVQVAE in a workdir.

  python -m cvqvae_jax.main --config=configs/NAME.py --workdir=DIR
      [--mode=train|evaluate|figures] [--config.FIELD=VALUE ...]

A config is a Python file whose get_config() returns an ml_collections
ConfigDict; every field is commented in configs/default.py. Any field can be
set on the command line with --config.FIELD=VALUE, nested fields with dots:
  --config.num_train_steps=5000 --config.model.num_codes=256
  --config.data.labels="('glasses',)" --config.data.data_dir=/data/celeba
A field that does not exist is an error. --mode=evaluate and --mode=figures
read WORKDIR/config.json (the config the run was trained with) when --config
is not given.

Configs shipped in configs/: {configs}.

The console shows progress, results and warnings; --verbose adds the INFO
logs of every library (orbax, JAX, grain).

Thin by design (flax examples): flags, then a call into the library.
Several processes (a cluster, docs/cluster.md): add --distributed, or set
CVQVAE_DISTRIBUTED=1, in every process.
"""

import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

MODES = ('train', 'evaluate', 'figures')
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_CONFIGS = os.path.join(os.path.dirname(_PACKAGE), 'configs')


def _config_names() -> str:
  if not os.path.isdir(_CONFIGS):
    return '(none found next to this package)'
  return ', '.join(sorted(f[:-3] for f in os.listdir(_CONFIGS)
                          if f.endswith('.py') and not f.startswith('_')))


__doc__ = __doc__.format(configs=_config_names())  # pylint: disable=redefined-builtin

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and '
                    'figures (a local path, or gs://... and other etils.epath '
                    'paths).')
flags.DEFINE_enum('mode', 'train', MODES, 'What to do with the workdir.')
config_flags.DEFINE_config_file(
    'config', None, 'Training configuration: a configs/NAME.py file; override '
    'its fields with --config.FIELD=VALUE. Optional with --mode=evaluate or '
    'figures (then WORKDIR/config.json).', lock_config=True)
flags.DEFINE_bool('verbose', False, 'Show the INFO logs of every library '
                  '(orbax, JAX, grain), not only this one\'s.')
flags.mark_flags_as_required(['workdir'])

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

class _ConsoleFilter(std_logging.Filter):
  """INFO from this package on process 0 only; other libraries' records from
  WARNING up (orbax's from ERROR up: its warnings are notes on its own
  options)."""

  def __init__(self):
    super().__init__()
    self.is_chief = True

  def filter(self, record: std_logging.LogRecord) -> bool:
    ours = record.pathname.startswith(_PACKAGE)
    if record.levelno >= std_logging.ERROR:
      return True
    if record.levelno >= std_logging.WARNING:
      return ours or '/orbax/' not in record.pathname
    return ours and self.is_chief


def quiet_logs() -> _ConsoleFilter:
  """Keeps other libraries' INFO (and orbax's warnings) off the console."""
  console = _ConsoleFilter()
  logging.get_absl_handler().addFilter(console)
  # Libraries that may log through a handler of their own (JAX does, in some
  # versions): their loggers drop INFO at the source.
  for name in ('jax', 'grain', 'tensorflow_datasets'):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)
  return console


def _config_error(error: Exception, argv) -> str:
  """One line for a --config.FIELD that does not exist (ml_collections
  raises it from inside flag parsing, several exceptions deep)."""
  texts, e = [], error
  while e is not None:
    texts.append(str(e.args[0]) if e.args else str(e))
    e = e.__cause__ or e.__context__
  text = ' '.join(texts)
  overrides = [a.split('=', 1)[0] for a in argv[1:]
               if a.startswith('--config.')]
  match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
  if match:
    field, suggestion = match.group(2), f'Did you mean {match.group(1)!r}?'
  else:
    found = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)'", text)
    field, suggestion = (found.group(1) if found else ''), ''
  flag = next((o for o in overrides if o.rsplit('.', 1)[-1] == field),
              None)
  if flag is None or not field:
    return (f'{texts[-1].strip()} (in the --config.FIELD flags: '
            f'{" ".join(overrides) or "none"}; every field is in '
            'configs/default.py)')
  return (f'{flag}: the config has no field {field!r}. {suggestion} '
          '(Every field is in configs/default.py.)').replace('  ', ' ')


def _parse_flags(argv):
  try:
    return app.parse_flags_with_usage(argv)
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    print(f'error: {_config_error(e, argv)}', file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console = None if FLAGS.verbose else quiet_logs()
  import jax  # pylint: disable=g-import-not-at-top
  from cvqvae_jax import api  # pylint: disable=g-import-not-at-top
  from cvqvae_jax import cli  # pylint: disable=g-import-not-at-top
  from cvqvae_jax import compile_cache  # pylint: disable=g-import-not-at-top
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
  if console is not None:  # INFO from process 0 only.
    console.is_chief = jax.process_index() == 0
  compile_cache.enable()
  with cli.exit_on_user_error():
    config = FLAGS.config
    if config is None:
      if FLAGS.mode == 'train':
        raise ValueError('--config is required to train: --config='
                         'configs/NAME.py (see --help).')
      config = api.load_config(FLAGS.workdir)
    logging.info('JAX process %d / %d, devices: %s', jax.process_index(),
                 jax.process_count(), jax.devices())
    if FLAGS.mode == 'train':
      cli.train(config, FLAGS.workdir)
    else:
      cli.run_offline(FLAGS.mode, config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
