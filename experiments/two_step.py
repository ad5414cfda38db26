r"""The two-step training of paper 2.4 from one command.

Stage one trains CGVAE (approach D) in WORKDIR/stage_one; stage two trains
CVQVAE (E, default) or CGVAE2 (F) in WORKDIR/stage_two, starting from stage
one's C_phi and tokens, frozen for the first --freeze_steps steps. Run the
same command again after a preemption and it continues where it stopped.

  python experiments/two_step.py --config=configs/default.py \
      --workdir=/tmp/cvqvae_two_step [--stage_two=cgvae2] \
      [--stage_one_steps=N] [--freeze_steps=N] [--config.FIELD=VALUE ...]

Then, as for any workdir:
  python -m cvqvae_jax.main --config=configs/default.py \
      --workdir=/tmp/cvqvae_two_step/stage_two --mode=evaluate
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cvqvae_jax import train
from cvqvae_jax import two_step

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds stage_one/, stage_two/.',
                               required=True)
_STAGE_TWO = flags.DEFINE_enum('stage_two', 'cvqvae',
                               list(two_step.STAGE_TWO_MODELS),
                               'cvqvae (approach E) or cgvae2 (approach F).')
_STAGE_ONE_STEPS = flags.DEFINE_integer(
    'stage_one_steps', None, 'Steps of stage one (default: num_train_steps).')
_FREEZE_STEPS = flags.DEFINE_integer(
    'freeze_steps', None, 'Steps C_phi and the tokens stay frozen in stage '
    'two (default: config.freeze_steps, or num_train_steps // 5 if 0).')


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  try:
    results = two_step.run(_CONFIG.value, _WORKDIR.value,
                           stage_two=_STAGE_TWO.value,
                           stage_one_steps=_STAGE_ONE_STEPS.value,
                           freeze_steps=_FREEZE_STEPS.value)
  except train.USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  if results is None:
    print('Preempted; run the same command again to continue.')


if __name__ == '__main__':
  app.run(main)
