r"""Tables 2 and 3 of the paper: CVQVAE against M2, CCVAE and JDVAE.

Trains and evaluates every row of --models on one config at equal steps
(the config's unless --steps), each through the command line a user would
type (experiments/tables.py): `cvqvae` is the paper's CVQVAE as the config
trains it (approach E: its stage one, then CVQVAE), `cvqvae_RECIPE` the same
with configs/default.py's recipe RECIPE on top (--chosen, the chosen CVQVAE),
m2, ccvae and jdvae train in one stage. The CVQVAE rows train once per seed
of --seeds (config.seed; the data stay the same) and the table shows their
mean and standard deviation. All rows are judged by the same independent
classifiers (trained once, in WORKDIR/classifier). A rerun skips every row
evaluated at the table's steps and resumes an unfinished one. Writes
WORKDIR/table2.json and WORKDIR/table2.md: per label the paper's columns
(BCA, SR(+), SR(-), their mean SR (Table 3), CFD, FID), then the ground
truth where the data have one (the oracle swap error and its region's as a
share of the identity error, the identity error, c's own-factor score, the
leakage probes, the held-out reconstruction), beside the paper's numbers for
that label (Table 2: glasses, smile; Table 3: the three pathologies) and the
ranking by mean SR, measured and the paper's.

  python experiments/table2.py --config=configs/default.py --workdir=/tmp/table2
      [--models=cvqvae,cvqvae_hsic_film,m2,ccvae,jdvae] [--seeds=0,1,2]
      [--steps=N] [--reuse=cvqvae=/tmp/cvqvae] [--extra_row=NAME=WORKDIR]

--reuse copies a finished run (evaluated at the table's steps, same config
and flags) in as that row instead of training it again. --extra_row adds an
evaluated workdir as one more row (e.g. a longer run), marked as such.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables  # pylint: disable=g-import-not-at-top

_CONFIG = flags.DEFINE_string('config', 'configs/default.py',
                              'Config file, as for cvqvae_jax.main.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds one workdir per row.',
                               required=True)
_STEPS = flags.DEFINE_integer('steps', None, 'Training steps of every model '
                              "(default: the config's num_train_steps).")
_CHOSEN = flags.DEFINE_string('chosen', 'hsic_film',
                              "The chosen CVQVAE's recipe (configs/default.py"
                              " RECIPES): the row cvqvae_<chosen>.")
_MODELS = flags.DEFINE_list(
    'models', None, 'Which rows, in order (default: cvqvae, cvqvae_<chosen>, '
    'm2, ccvae, jdvae).')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'],
                           'Seeds of the CVQVAE rows (the others: seed 0).')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], 'FIELD=VALUE config overrides for every row, e.g. '
    'eval_every_steps=0.')
_REUSE = flags.DEFINE_multi_string(
    'reuse', [], 'ROW=WORKDIR: a finished, evaluated run to copy in.')
_EXTRA = flags.DEFINE_multi_string(
    'extra_row', [], 'NAME=WORKDIR: an evaluated workdir shown as one more '
    'row.')


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  chosen = _CHOSEN.value
  seeds = [int(s) for s in _SEEDS.value]
  tables.reuse(root, _REUSE.value, _STEPS.value)
  names = _MODELS.value or tables.default_models(chosen)
  rows = tables.table_rows(names, chosen, seeds)
  records = tables.run_table(root, _CONFIG.value, rows, _STEPS.value,
                             _OVERRIDES.value, 'table2')
  tables.add_extra_rows(records, _EXTRA.value)
  count = _STEPS.value if _STEPS.value is not None else "the config's"
  note = (f'Config {_CONFIG.value}, {count} steps per model'
          + (f', overrides {_OVERRIDES.value}' if _OVERRIDES.value else '')
          + f'; CVQVAE rows over seeds {seeds}.')
  table = tables.markdown(records, note, tables.PAPER,
                          tables.group_paper_name)
  with open(os.path.join(root, 'table2.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
