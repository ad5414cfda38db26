r"""Tables 2 and 3 of the paper: CVQVAE against M2, CCVAE and JDVAE.

Trains and evaluates every model of --models on one config at equal steps,
each through the command line a user would type (a child process per step,
its output in WORKDIR/<model>/train.log and evaluate.log):

  python -m cvqvae_jax.main --config=CONFIG --workdir=WORKDIR/<model> \
      --config.model.name=<model> --config.num_train_steps=STEPS --mode=train
  ... --mode=evaluate

cvqvae trains as the config says (approach E: its stage one, then CVQVAE);
m2, ccvae and jdvae train in one stage. All are judged by the same
independent classifiers (trained once, in WORKDIR/classifier). A rerun skips
every model whose WORKDIR/<model>/eval/results.json is at STEPS, and resumes
an unfinished one. Writes WORKDIR/table2.json and WORKDIR/table2.md: per
label the paper's columns (BCA, SR(+), SR(-), their mean SR (Table 3), CFD,
FID), the oracle swap errors and the leakage probes, beside the paper's
numbers for that label (Table 2: glasses, smile; Table 3: the three
pathologies).

  python experiments/table2.py --config=configs/default.py \
      --workdir=/tmp/table2 --steps=1000 [--models=cvqvae,m2,ccvae,jdvae] \
      [--reuse=cvqvae=/tmp/cvqvae_default] [--extra_row=NAME=WORKDIR]

--reuse copies a finished run (evaluated at STEPS, same config) in as that
model's row instead of training it again. --extra_row adds an evaluated
workdir as one more row of the table (e.g. a longer run), marked as such.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

from cvqvae_jax import api
from cvqvae_jax import classifier
from cvqvae_jax import two_step

_CONFIG = flags.DEFINE_string('config', 'configs/default.py',
                              'Config file, as for cvqvae_jax.main.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Holds one workdir per model.',
                               required=True)
_STEPS = flags.DEFINE_integer('steps', None, 'Training steps of every model '
                              "(default: the config's num_train_steps).")
_MODELS = flags.DEFINE_list('models', ['cvqvae', 'm2', 'ccvae', 'jdvae'],
                            'Which models, in order.')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], 'FIELD=VALUE config overrides for every model, e.g. '
    'eval_every_steps=0.')
_REUSE = flags.DEFINE_multi_string(
    'reuse', [], 'MODEL=WORKDIR: a finished, evaluated run to copy in.')
_EXTRA = flags.DEFINE_multi_string(
    'extra_row', [], 'NAME=WORKDIR: an evaluated workdir shown as one more '
    'row.')

# The paper's numbers (Table 2: CelebA; Table 3: CheXpert; SR = the mean of
# SR(+) and SR(-)). Fractions, as in eval/results.json.
PAPER = {
    'glasses': {
        'CCVAE': dict(cfd=0.145, sr_minus=0.9552, sr_plus=0.4789, fid=21.10,
                      bca=0.9626),
        'JDVAE': dict(cfd=0.098, sr_minus=0.9498, sr_plus=0.6425, fid=21.66,
                      bca=0.9709),
        'M2': dict(cfd=0.274, sr_minus=0.8034, sr_plus=0.3302, fid=22.27,
                   bca=0.9613),
        'CVQVAE': dict(cfd=0.093, sr_minus=1.0, sr_plus=0.7913, fid=20.05,
                       bca=0.9667)},
    'smile': {
        'CCVAE': dict(cfd=0.052, sr_minus=0.9697, sr_plus=0.7475, fid=16.14,
                      bca=0.9080),
        'JDVAE': dict(cfd=0.059, sr_minus=0.8180, sr_plus=0.7934, fid=16.36,
                      bca=0.9052),
        'M2': dict(cfd=0.069, sr_minus=0.4407, sr_plus=0.5072, fid=16.75,
                   bca=0.9048),
        'CVQVAE': dict(cfd=0.049, sr_minus=0.8925, sr_plus=0.9025, fid=14.54,
                       bca=0.9009)},
    'cardiomegaly': {
        'CCVAE': dict(cfd=0.298, sr=0.5751, fid=8.01, bca=0.8033),
        'JDVAE': dict(cfd=0.261, sr=0.6027, fid=7.82, bca=0.7944),
        'M2': dict(cfd=0.347, sr=0.4736, fid=8.99, bca=0.7958),
        'CVQVAE': dict(cfd=0.169, sr=0.6997, fid=7.13, bca=0.7992)},
    'atelectasis': {
        'CCVAE': dict(cfd=0.137, sr=0.4938, fid=7.67, bca=0.7192),
        'JDVAE': dict(cfd=0.138, sr=0.5092, fid=7.62, bca=0.7111),
        'M2': dict(cfd=0.233, sr=0.4199, fid=7.99, bca=0.7099),
        'CVQVAE': dict(cfd=0.134, sr=0.6455, fid=6.87, bca=0.7286)},
    'consolidation': {
        'CCVAE': dict(cfd=0.215, sr=0.6216, fid=7.04, bca=0.8067),
        'JDVAE': dict(cfd=0.250, sr=0.6223, fid=7.07, bca=0.8007),
        'M2': dict(cfd=0.446, sr=0.3693, fid=8.43, bca=0.8058),
        'CVQVAE': dict(cfd=0.117, sr=0.7236, fid=6.91, bca=0.8046)},
}
PAPER_NAMES = {'cvqvae': 'CVQVAE', 'm2': 'M2', 'ccvae': 'CCVAE',
               'jdvae': 'JDVAE'}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results_path(workdir: str) -> str:
  return os.path.join(workdir, 'eval', 'results.json')


def evaluated_at(workdir: str) -> int | None:
  """The step of WORKDIR/eval/results.json, or None."""
  try:
    with open(results_path(workdir)) as f:
      return int(json.load(f)['step'])
  except (OSError, ValueError, KeyError):
    return None


def trained_to(workdir: str, steps: int) -> bool:
  """Whether the run in `workdir` (its config.json) has trained its own
  model to `steps` (two_step.finished)."""
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    return False
  config = api.load_config(workdir)
  config.num_train_steps = steps
  return two_step.finished(workdir, config)


def _run(args, log_path: str) -> float:
  """Runs `python -m cvqvae_jax.main ARGS`, output to `log_path`; returns
  the wall time. Exits with the log's tail on failure."""
  command = [sys.executable, '-m', 'cvqvae_jax.main', *args]
  start = time.time()
  with open(log_path, 'a') as log:
    log.write('$ ' + ' '.join(command) + '\n')
    log.flush()
    rc = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                         cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT})
  if rc:
    with open(log_path) as f:
      tail = f.read()[-2000:]
    sys.exit(f'{" ".join(command)} failed (exit {rc}); the end of '
             f'{log_path}:\n{tail}')
  return time.time() - start


def run_model(name: str, root: str, steps: int | None, times: dict) -> dict:
  """Trains and evaluates one model unless finished; its results.json."""
  workdir = os.path.join(root, name)
  os.makedirs(workdir, exist_ok=True)
  args = [f'--config={_CONFIG.value}', f'--workdir={workdir}',
          f'--config.model.name={name}']
  if steps is not None:
    args.append(f'--config.num_train_steps={steps}')
  args += [f'--config.{o}' for o in _OVERRIDES.value]
  done = evaluated_at(workdir)
  if done is None or (steps is not None and done != steps):
    if steps is not None and trained_to(workdir, steps):
      print(f'{name}: trained to step {steps} already.', flush=True)
    else:
      print(f'[{time.strftime("%H:%M:%S")}] {name}: training '
            f'(log: {workdir}/train.log)', flush=True)
      times['train_seconds'] = round(_run(
          args + ['--mode=train'], os.path.join(workdir, 'train.log')), 1)
    classifier.share_cache(root, workdir)
    print(f'[{time.strftime("%H:%M:%S")}] {name}: evaluating '
          f'(log: {workdir}/evaluate.log)', flush=True)
    times['evaluate_seconds'] = round(_run(
        args + ['--mode=evaluate'], os.path.join(workdir, 'evaluate.log')), 1)
  else:
    print(f'{name}: finished at step {done}, skipped.', flush=True)
  with open(results_path(workdir)) as f:
    return json.load(f)


def _reuse(root: str, steps: int | None) -> None:
  """Copies each --reuse MODEL=WORKDIR in as ROOT/MODEL (once)."""
  for item in _REUSE.value:
    name, _, source = item.partition('=')
    target = os.path.join(root, name)
    if os.path.exists(target):
      continue
    step = evaluated_at(source)
    if step is None or (steps is not None and step != steps):
      print(f'--reuse {item}: not evaluated at step {steps} (found {step}); '
            f'{name} is trained instead.', flush=True)
      continue
    shutil.copytree(source, target, symlinks=True)
    shared = os.path.join(root, 'classifier')
    if not os.path.exists(shared) and os.path.isdir(
        os.path.join(source, 'classifier')):
      shutil.copytree(os.path.join(source, 'classifier'), shared)
    print(f'{name}: copied from {source} (step {step}).', flush=True)


def _fmt(value, percent=False) -> str:
  if value is None:
    return 'n/a'
  return f'{100 * value:.1f}%' if percent else f'{value:.3f}'


def _mean_sr(row: dict):
  if row.get('sr_plus') is None or row.get('sr_minus') is None:
    return None
  return (row['sr_plus'] + row['sr_minus']) / 2


def markdown(rows: dict, labels, steps_note: str) -> str:
  """One table per label: measured rows, then the paper's rows."""
  out = [steps_note, '']
  head = ('| model | steps | BCA | SR(+) | SR(-) | SR | CFD | FID | '
          'oracle swap + / - | recon + / - | identity + / - | c leakage | '
          'z leakage |')
  for label in labels:
    out += [f'**{label}** (measured)', '', head, '|' + '---|' * 13]
    for name, (res, _) in rows.items():
      m = res['labels'][label]
      pair = lambda a, b: (f'{m[a]:.4f} / {m[b]:.4f}' if a in m else 'n/a')
      out.append(
          f'| {name} | {res["step"]} | {_fmt(m.get("bca"), True)} | '
          f'{_fmt(m.get("sr_plus"), True)} | {_fmt(m.get("sr_minus"), True)}'
          f' | {_fmt(_mean_sr(m), True)} | {_fmt(m.get("cfd"))} | '
          f'{_fmt(m.get("fid"))} | '
          f'{pair("oracle_swap_mse_plus", "oracle_swap_mse_minus")} | '
          f'{pair("oracle_reconstruction_mse_plus", "oracle_reconstruction_mse_minus")} | '
          f'{pair("oracle_identity_mse_plus", "oracle_identity_mse_minus")} | '
          f'{_fmt(m.get("c_leakage"))} | {_fmt(m.get("z_leakage"))} |')
    paper = PAPER.get(label)
    if paper:
      out += ['', f'**{label}** (paper, real images)', '',
              '| model | BCA | SR(+) | SR(-) | SR | CFD | FID |',
              '|' + '---|' * 7]
      for name, p in paper.items():
        sr = p.get('sr', _mean_sr(p))
        out.append(f'| {name} | {_fmt(p["bca"], True)} | '
                   f'{_fmt(p.get("sr_plus"), True)} | '
                   f'{_fmt(p.get("sr_minus"), True)} | {_fmt(sr, True)} | '
                   f'{p["cfd"]:.3f} | {p["fid"]:.2f} |')
    out.append('')
  return '\n'.join(out)


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  steps = _STEPS.value
  summary_path = os.path.join(root, 'table2.json')
  previous = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      previous = json.load(f).get('times', {})
  _reuse(root, steps)
  rows, times = {}, {}
  for name in _MODELS.value:
    times[name] = dict(previous.get(name, {}))
    rows[name] = (run_model(name, root, steps, times[name]), times[name])
    with open(summary_path, 'w') as f:  # After every model: resumable.
      json.dump({'config': _CONFIG.value, 'steps': steps,
                 'overrides': _OVERRIDES.value, 'times': times,
                 'results': {n: r for n, (r, _) in rows.items()}}, f,
                indent=2)
  for item in _EXTRA.value:
    name, _, workdir = item.partition('=')
    with open(results_path(workdir)) as f:
      rows[f'{name} (extra row)'] = (json.load(f), {})
  labels = list(next(iter(rows.values()))[0]['labels'])
  count = steps if steps is not None else "the config's"
  note = (f'Config {_CONFIG.value}, {count} steps per model'
          + (f', overrides {_OVERRIDES.value}' if _OVERRIDES.value
                     else '') + '.')
  table = markdown(rows, labels, note)
  with open(os.path.join(root, 'table2.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
