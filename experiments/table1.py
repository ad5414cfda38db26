r"""Table 1 of the paper (approaches A-F) at equal steps, on any config.

A vq_argmin, B vq_entropy, C cvqvae, D cgvae: one stage each. E cvqvae and
F cgvae2: stage two, initialised from D's workdir (C_phi and tokens frozen
for --freeze_steps steps). Every variant trains --steps steps; E and F start
from D, so they have seen D's steps before their own. Each variant lives in
WORKDIR/<letter>; a rerun resumes, or only re-evaluates a finished variant.
Each variant is evaluated as --mode=evaluate does (eval/results.json in its
workdir), with one set of independent classifiers shared by all (trained once
in WORKDIR/classifier). Writes WORKDIR/table1.json and WORKDIR/table1.md.

  python experiments/table1.py --config=configs/default.py \
      --workdir=/tmp/table1 --steps=1000 [--variants=ABCDEF]
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cvqvae_jax import classifier
from cvqvae_jax import cli
from cvqvae_jax import two_step

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
  # E and F start from D's workdir here (so that D is trained once for both)
  # rather than from a stage one of their own.
  config.stage_one.model = ''
  config.init_from = os.path.join(workdir, stage_one) if stage_one else ''
  config.freeze_steps = freeze_steps if stage_one else 0
  return config


def last_records(workdir) -> tuple[dict, dict]:
  """(last logged training record, last end-of-training evaluation record)
  of metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(l) for l in f]
  return ([r for r in records if 'loss' in r][-1],
          [r for r in records if 'eval_reconstruction_mse' in r][-1])


def _num(value) -> str:
  return 'n/a' if value is None else f'{value:.3f}'


def markdown(rows, labels) -> str:
  """One table per label: the paper's metrics and the oracle errors."""
  out = []
  for label in labels:
    out += [f'**{label}**', '',
            '| variant | model | train recon (sampled z) | train KL | recon MSE '
            '(most likely z) | BCA | SR(+) | SR(-) | CFD | oracle swap + / - '
            '| identity + / - | c leakage | z leakage |', '|' + '---|' * 13]
    for letter, row in rows.items():
      m = row['labels'][label]
      oracle = ident = 'n/a'
      if 'oracle_swap_mse_plus' in m:
        oracle = (f'{m["oracle_swap_mse_plus"]:.4f} / '
                  f'{m["oracle_swap_mse_minus"]:.4f}')
        ident = (f'{m["oracle_identity_mse_plus"]:.4f} / '
                 f'{m["oracle_identity_mse_minus"]:.4f}')
      out.append(
          f'| {letter} | {row["model"]} | {row["train_reconstruction"]:.4f} | '
          f'{row["train_kl"]:.1f} | {row["reconstruction_mse"]:.4f} | '
          f'{m["bca"]:.3f} | {m["sr_plus"]:.3f} | {m["sr_minus"]:.3f} | '
          f'{m["cfd"]:.3f} | {oracle} | {ident} | {_num(m.get("c_leakage"))} '
          f'| {_num(m.get("z_leakage"))} |')
    out.append('')
  return '\n'.join(out)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  rows = {}
  for letter in _VARIANTS.value:
    config = variant_config(_CONFIG.value, letter, root, _STEPS.value,
                            _FREEZE.value)
    workdir = os.path.join(root, letter)
    start = time.time()
    with cli.exit_on_user_error(f'error in variant {letter}'):
      if not two_step.finished(workdir, config):
        if not cli.train(config, workdir):
          print('Preempted; run the same command again to continue.')
          return
      classifier.share_cache(root, workdir)
      paper = cli.run_offline('evaluate', config, workdir)
    last_train, last_eval = last_records(workdir)
    rows[letter] = {'model': config.model.name, 'init_from': config.init_from,
                    'steps': config.num_train_steps,
                    'seconds': round(time.time() - start, 1),
                    'train_reconstruction': last_train['reconstruction'],
                    'train_kl': last_train['kl'],
                    'reconstruction_mse': last_eval['eval_reconstruction_mse'],
                    'labels': paper['labels']}
  with open(os.path.join(root, 'table1.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  table = markdown(rows, list(_CONFIG.value.data.labels))
  with open(os.path.join(root, 'table1.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
