r"""Table 1 of the paper (approaches A-F) at equal steps, on any config.

A vq_argmin, B vq_entropy, C cvqvae, D cgvae: one stage each. E cvqvae and
F cgvae2: the config's two steps (stage one, config.stage_one: CGVAE for
stage_one.share of the steps, then the model from its C_phi and tokens,
frozen for freeze_steps), so that every variant trains the same total steps
(the config's unless --steps); E is the README job's model. Each variant
is trained and evaluated through the command line a user would type, in
WORKDIR/<letter> (experiments/tables.py); a rerun skips every variant
evaluated at the table's steps and resumes an unfinished one. All are judged
by one set of independent classifiers (trained once in WORKDIR/classifier).
Writes WORKDIR/table1.json and WORKDIR/table1.md: per label the paper's
columns (SR(-), SR(+), CFD, FID; BCA and mean SR besides), the ground truth
where the data have one, the paper's Table 1 (glasses) and the rankings.

  python experiments/table1.py --config=configs/default.py --workdir=/tmp/table1
      [--variants=ABCDEF] [--steps=N] [--reuse=E=/tmp/cvqvae]
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables  # pylint: disable=g-import-not-at-top

_CONFIG = flags.DEFINE_string('config', 'configs/default.py',
                              'Config file, as for cvqvae_jax.main.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds A/ ... F/.',
                               required=True)
_STEPS = flags.DEFINE_integer('steps', None, 'Training steps per variant '
                              "(default: the config's num_train_steps).")
_VARIANTS = flags.DEFINE_string('variants', 'ABCDEF', 'Which to run.')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], 'FIELD=VALUE config overrides for every variant.')
_REUSE = flags.DEFINE_multi_string(
    'reuse', [], 'LETTER=WORKDIR: a finished, evaluated run to copy in (E: '
    'the README job).')

def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(tables.VARIANTS))
  if unknown:
    sys.exit(f'Unknown variants {unknown}; known: {"".join(tables.VARIANTS)}.')
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  tables.reuse(root, _REUSE.value, _STEPS.value)
  records = tables.run_table(
      root, _CONFIG.value, [tables.variant_row(l) for l in _VARIANTS.value],
      _STEPS.value, _OVERRIDES.value, 'table1')
  count = _STEPS.value if _STEPS.value is not None else "the config's"
  note = (f'Config {_CONFIG.value}, {count} steps per variant (E and F: '
          'stage one included)'
          + (f', overrides {_OVERRIDES.value}' if _OVERRIDES.value else '')
          + '.')
  table = tables.markdown(records, note, tables.PAPER_TABLE1,
                          lambda g: tables.VARIANT_NAMES.get(g, g))
  with open(os.path.join(root, 'table1.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
