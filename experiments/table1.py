r"""Table 1 of the paper (approaches A-F) at equal steps, on any config.

A vq_argmin, B vq_entropy, C cvqvae, D cgvae: one stage each. E cvqvae and
F cgvae2: stage two, initialised from D's workdir (C_phi and tokens frozen
for --freeze_steps steps). Every variant trains --steps steps; E and F start
from D, so they have seen D's steps before their own. Each variant lives in
WORKDIR/<letter>; a rerun resumes or re-evaluates. Writes WORKDIR/table1.json
and WORKDIR/table1.md.

  python experiments/table1.py --config=configs/default.py \
      --workdir=/tmp/table1 --steps=1000 [--variants=ABCDEF]
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cvqvae_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds A/ ... F/.',
                               required=True)
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps per variant.')
_FREEZE = flags.DEFINE_integer('freeze_steps', 200,
                               'Frozen C_phi and tokens steps of E and F.')
_VARIANTS = flags.DEFINE_string('variants', 'ABCDEF', 'Which to run.')

# letter -> (model.name, stage one letter or None), paper 2.4.
VARIANTS = {'A': ('vq_argmin', None), 'B': ('vq_entropy', None),
            'C': ('cvqvae', None), 'D': ('cgvae', None),
            'E': ('cvqvae', 'D'), 'F': ('cgvae2', 'D')}


def variant_config(config, letter, workdir, steps, freeze_steps):
  name, stage_one = VARIANTS[letter]
  config = config.copy_and_resolve_references()
  config.model.name = name
  config.num_train_steps = steps
  config.init_from = os.path.join(workdir, stage_one) if stage_one else ''
  config.freeze_steps = freeze_steps if stage_one else 0
  return config


def last_training_record(workdir) -> dict:
  """The last logged training record (means over its logging interval)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(l) for l in f]
  return [r for r in records if 'loss' in r][-1]


def markdown(rows, labels) -> str:
  head = ['variant', 'model', 'train recon (sampled z)', 'train KL',
          'recon MSE (most likely z)']
  for l in labels:
    head += [f'acc {l}', f'{l} swap+ / identity+', f'{l} swap- / identity-']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for letter, row in rows.items():
    r = row['results']
    t = row['train']
    cells = [letter, row['model'], f'{t["reconstruction"]:.4f}',
             f'{t["kl"]:.1f}', f'{r["eval_reconstruction_mse"]:.4f}']
    for l in labels:
      cells.append(f'{r[f"eval_accuracy_{l}"]:.3f}')
      for d in ('plus', 'minus'):
        swap = r.get(f'eval_{l}_oracle_swap_mse_{d}')
        ident = r.get(f'eval_{l}_oracle_identity_mse_{d}')
        cells.append('n/a' if swap is None else f'{swap:.4f} / {ident:.4f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  rows = {}
  for letter in _VARIANTS.value:
    config = variant_config(_CONFIG.value, letter, workdir, _STEPS.value,
                            _FREEZE.value)
    start = time.time()
    try:
      results = train.train_and_evaluate(config, os.path.join(workdir, letter))
    except train.USER_ERRORS as e:
      print(f'error in variant {letter}: {e}', file=sys.stderr)
      sys.exit(1)
    if not results:
      print('Preempted; run the same command again to continue.')
      return
    rows[letter] = {'model': config.model.name, 'init_from': config.init_from,
                    'steps': config.num_train_steps,
                    'seconds': round(time.time() - start, 1),
                    'train': last_training_record(
                        os.path.join(workdir, letter)),
                    'results': results}
  with open(os.path.join(workdir, 'table1.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  table = markdown(rows, list(_CONFIG.value.data.labels))
  with open(os.path.join(workdir, 'table1.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
