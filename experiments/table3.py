r"""Table 3 of the paper (CheXpert: cardiomegaly, atelectasis, consolidation)
and its stand-ins on this machine.

The paper's Table 3 compares CVQVAE with M2, CCVAE and JDVAE on three
CheXpert pathologies, by BCA, SR (the mean of SR(+) and SR(-)), CFD and FID.
CheXpert cannot be downloaded everywhere, so by default this runs the table
on two shape labels that stand in for it (a pathology like cardiomegaly
changes a shape, not a local patch):

  big_head  the procedural faces' whole-head size (configs/default.py with
            data.labels=('big_head',)), the config's steps; ground truth;
  is_seven  scikit-learn's handwritten sevens against ones through the csv
            source (experiments/digits_csv.py writes --digits_dir), 1000 steps
            (its 286 training images); no ground truth.

They stand in for CheXpert; their numbers are not CheXpert's. With --config
a config of its own (e.g. configs/chexpert_cardiomegaly.py on a machine with
the data) the same rows run on it instead. Rows, seeds, reuse and resuming
are tables.py's (experiments/tables.py): cvqvae (the paper's), cvqvae_<chosen>
(--chosen recipe), m2, ccvae, jdvae. Each stand-in lives in
WORKDIR/<stand-in>/<row>; writes WORKDIR/table3.json and WORKDIR/table3.md,
with the independent classifier's own test accuracy beside each SR (what a
swap judged by it can reach) and the paper's Table 3 below.

  python experiments/digits_csv.py --out=/tmp/digits      # needs scikit-learn
  python experiments/table3.py --workdir=/tmp/table3 --digits_dir=/tmp/digits
  python experiments/table3.py --workdir=/tmp/table3_cm \
      --config=configs/chexpert_cardiomegaly.py \
      --set=data.data_dir=/data/chexpert
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds one folder per '
                               'stand-in (or the rows of --config).',
                               required=True)
_CONFIG = flags.DEFINE_string('config', None, 'A config to run the table on '
                              'instead of the stand-ins (e.g. configs/'
                              'chexpert_cardiomegaly.py).')
_STANDINS = flags.DEFINE_list('standins', ['big_head', 'is_seven'],
                              'Which stand-ins, without --config.')
_DIGITS = flags.DEFINE_string('digits_dir', '/tmp/digits',
                              'experiments/digits_csv.py --out (is_seven).')
_CHOSEN = flags.DEFINE_string('chosen', 'hsic_film',
                              "The chosen CVQVAE's recipe (configs/default.py"
                              ' RECIPES).')
_MODELS = flags.DEFINE_list('models', None, 'Which rows (tables.py).')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds of the CVQVAE rows.')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], 'FIELD=VALUE config overrides for every row, e.g. '
    'data.data_dir=/data/chexpert.')
_REUSE = flags.DEFINE_multi_string(
    'reuse', [], 'STANDIN/ROW=WORKDIR (or ROW=WORKDIR with --config): a '
    'finished, evaluated run to copy in.')

COLUMNS = [
    ('BCA', lambda m, r: tables.pct(m.get('bca'))),
    ('SR', lambda m, r: tables.pct(tables.mean_sr(m))),
    ('SR(+)', lambda m, r: tables.pct(m.get('sr_plus'))),
    ('SR(-)', lambda m, r: tables.pct(m.get('sr_minus'))),
    ('classifier accuracy', lambda m, r: tables.pct(
        m.get('classifier_accuracy'))),
    ('CFD', lambda m, r: tables.num(m.get('cfd'))),
    ('FID', lambda m, r: tables.num(m.get('fid'), 2)),
] + tables.GROUND_TRUTH_COLUMNS


def _reuse_items(prefix: str):
  """The --reuse items for one stand-in folder, without their prefix."""
  if not prefix:
    return _REUSE.value
  return [item[len(prefix) + 1:] for item in _REUSE.value
          if item.startswith(prefix + '/')]


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  chosen = _CHOSEN.value
  seeds = [int(s) for s in _SEEDS.value]
  names = _MODELS.value or tables.default_models(chosen)
  rows = tables.table_rows(names, chosen, seeds)
  if _CONFIG.value:
    runs = [('', _CONFIG.value, ())]
  else:
    runs = [(s, 'configs/default.py', tables.standin_flags(s, _DIGITS.value))
            for s in _STANDINS.value]
  out = ['Stand-ins for the paper\'s CheXpert Table 3 (shape labels on this '
         "machine's data, not CheXpert)" if not _CONFIG.value
         else f'Config {_CONFIG.value}', '']
  summary = {}
  for name, config, flags_ in runs:
    folder = os.path.join(root, name) if name else root
    os.makedirs(folder, exist_ok=True)
    tables.reuse(folder, _reuse_items(name), None)
    records = tables.run_table(folder, config, rows, None, _OVERRIDES.value,
                               'table3',
                               extra_flags=flags_)
    summary[name or config] = records
    steps = tables.DIGITS_STEPS if name == 'is_seven' else "the config's"
    out += [f'### {name or config}', '',
            tables.markdown(records, f'{config} {" ".join(flags_)}; {steps} '
                            'steps per model.', tables.PAPER,
                            tables.group_paper_name, COLUMNS)]
  if not _CONFIG.value:
    out += ['### The paper (CheXpert, real images)', '']
    for label in tables.PATHOLOGIES:
      out += tables.paper_section(label, tables.PAPER[label]) + ['']
  table = '\n'.join(out)
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, 'table3.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(root, 'table3.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
