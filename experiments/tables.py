"""What experiments/table1.py, table2.py and table3.py share.

A table is a list of rows; a row is a name and the command-line flags that
make its model from the table's config (`--config.model.name=m2`, a recipe's
fields, a seed). Every row is trained and evaluated through the command line
a user would type, a child process per mode, its output in ROOT/<row>/
train.log and evaluate.log:

  python -m cvqvae_jax.main --config=CONFIG --workdir=ROOT/<row> FLAGS \
      --mode=train            (then the same with --mode=evaluate)

A rerun skips every row whose ROOT/<row>/eval/results.json is at the
table's steps and resumes an unfinished one (a preempted table loses at most
a checkpoint interval). All rows of a table are judged by the same
independent classifiers, trained once in ROOT/classifier (each row's
classifier/ is a link to it).
"""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time

from cvqvae_jax import classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe_flags(recipe: str) -> tuple[str, ...]:
  """configs/default.py's RECIPES[recipe] as --config.FIELD=VALUE flags, so
  that a recipe applies to any config (CelebA and CheXpert ones too)."""
  spec = importlib.util.spec_from_file_location(
      'default_config', os.path.join(ROOT, 'configs', 'default.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return tuple(f'--config.{field}={value}'
               for field, value in module.RECIPES[recipe].items())


@dataclasses.dataclass(frozen=True)
class Row:
  name: str            # its folder under the table's root
  flags: tuple[str, ...]
  label: str = ''      # how the table shows it ('' = name)
  group: str = ''      # rows of one model with different seeds share it


def seeded(row: Row, seeds) -> list[Row]:
  """`row` once per seed (config.seed: parameters and the step RNG; the data,
  its split and its label mask stay the config's). Seed 0 keeps the row's
  name, so that a one-seed table's folder is reused."""
  return [Row(row.name if s == 0 else f'{row.name}_seed{s}',
              row.flags + ((f'--config.seed={s}',) if s else ()),
              f'{row.label or row.name} (seed {s})', row.name)
          for s in seeds]


def results_path(workdir: str) -> str:
  return os.path.join(workdir, 'eval', 'results.json')


def evaluated_at(workdir: str) -> int | None:
  """The step of WORKDIR/eval/results.json, or None."""
  try:
    with open(results_path(workdir)) as f:
      return int(json.load(f)['step'])
  except (OSError, ValueError, KeyError):
    return None


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
             f'{log_path}:\n{tail}\nRun the same table command again to '
             'resume: finished rows are skipped.')
  return time.time() - start


def run_row(root: str, row: Row, config: str, steps: int | None,
            extra_flags=(), times: dict | None = None) -> dict:
  """Trains and evaluates `row` unless ROOT/<row>/eval/results.json is at
  `steps` (None: the config's); its results.json. `times` gets the wall
  times of what ran."""
  workdir = os.path.join(root, row.name)
  os.makedirs(workdir, exist_ok=True)
  args = [f'--config={config}', f'--workdir={workdir}', *row.flags,
          *extra_flags]
  if steps is not None:
    args.append(f'--config.num_train_steps={steps}')
  done = evaluated_at(workdir)
  times = {} if times is None else times
  if done is not None and (steps is None or done == steps):
    print(f'{row.name}: evaluated at step {done}, skipped.', flush=True)
  else:
    # Training an already finished run only logs that it is finished.
    print(f'[{time.strftime("%H:%M:%S")}] {row.name}: training '
          f'(log: {workdir}/train.log)', flush=True)
    times['train_seconds'] = round(
        _run(args + ['--mode=train'], os.path.join(workdir, 'train.log')), 1)
    classifier.share_cache(root, workdir)
    print(f'[{time.strftime("%H:%M:%S")}] {row.name}: evaluating '
          f'(log: {workdir}/evaluate.log)', flush=True)
    times['evaluate_seconds'] = round(_run(
        args + ['--mode=evaluate'], os.path.join(workdir, 'evaluate.log')), 1)
  with open(results_path(workdir)) as f:
    return json.load(f)


def reuse(root: str, items, steps: int | None) -> None:
  """Copies each ROW=WORKDIR of `items` in as ROOT/ROW (once): a finished,
  evaluated run of the same config and flags, instead of training it again."""
  for item in items:
    name, _, source = item.partition('=')
    target = os.path.join(root, name)
    if os.path.exists(target):
      continue
    step = evaluated_at(source)
    if step is None or (steps is not None and step != steps):
      print(f'--reuse {item}: not evaluated at step {steps} (found {step}); '
            f'{name} is trained instead.', flush=True)
      continue
    shutil.copytree(source, target, symlinks=True,
                    ignore=shutil.ignore_patterns('classifier'))
    shared = os.path.join(root, 'classifier')
    if not os.path.exists(shared) and os.path.isdir(
        os.path.join(source, 'classifier')):
      shutil.copytree(os.path.join(source, 'classifier'), shared)
    classifier.share_cache(root, target)
    print(f'{name}: copied from {source} (step {step}).', flush=True)


def held_out_reconstruction(workdir: str) -> float | None:
  """The last end-of-training eval_reconstruction_mse of metrics.jsonl."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(l) for l in f]
  except OSError:
    return None
  values = [r['eval_reconstruction_mse'] for r in records
            if 'eval_reconstruction_mse' in r]
  return values[-1] if values else None


def mean_sr(m: dict):
  """The paper's SR of Table 3: the mean of SR(+) and SR(-)."""
  if m.get('sr_plus') is None or m.get('sr_minus') is None:
    return None
  return (m['sr_plus'] + m['sr_minus']) / 2


def ratio(m: dict, key: str, identity: str):
  """m[key] / m[identity] (the swap's error as a share of doing nothing)."""
  if m.get(key) is None or not m.get(identity):
    return None
  return m[key] / m[identity]


# Columns shared by the tables: (header, function of (label metrics, row
# record), format). The ground truth after the paper's metrics.
def pct(v):
  return 'n/a' if v is None else f'{100 * v:.1f}%'


def num(v, digits=3):
  return 'n/a' if v is None else f'{v:.{digits}f}'


def pair(a, b, digits=2):
  if a is None or b is None:
    return 'n/a'
  return f'{a:.{digits}f} / {b:.{digits}f}'


PAPER_COLUMNS = [
    ('BCA', lambda m, r: pct(m.get('bca'))),
    ('SR(+)', lambda m, r: pct(m.get('sr_plus'))),
    ('SR(-)', lambda m, r: pct(m.get('sr_minus'))),
    ('SR', lambda m, r: pct(mean_sr(m))),
    ('CFD', lambda m, r: num(m.get('cfd'))),
    ('FID', lambda m, r: num(m.get('fid'), 2)),
]
GROUND_TRUTH_COLUMNS = [
    ('swap / identity + / -', lambda m, r: pair(
        ratio(m, 'oracle_swap_mse_plus', 'oracle_identity_mse_plus'),
        ratio(m, 'oracle_swap_mse_minus', 'oracle_identity_mse_minus'))),
    ('region swap / identity + / -', lambda m, r: pair(
        ratio(m, 'oracle_swap_region_mse_plus',
              'oracle_identity_region_mse_plus'),
        ratio(m, 'oracle_swap_region_mse_minus',
              'oracle_identity_region_mse_minus'))),
    ('identity + / -', lambda m, r: pair(
        m.get('oracle_identity_mse_plus'), m.get('oracle_identity_mse_minus'),
        4)),
    ('c own', lambda m, r: num(m.get('c_own_factors_score'))),
    ('c leakage', lambda m, r: num(m.get('c_leakage'))),
    ('z leakage', lambda m, r: num(m.get('z_leakage'))),
    ('recon', lambda m, r: num(r.get('reconstruction'), 4)),
]


def row_record(root: str, row: Row, results: dict, times: dict) -> dict:
  """What a table keeps of one row."""
  return {'label': row.label or row.name, 'group': row.group or row.name,
          'flags': list(row.flags), 'step': results['step'],
          'reconstruction': held_out_reconstruction(
              os.path.join(root, row.name)),
          'labels': results['labels'], 'times': times}


# Numbers that seeds are averaged over (per label, and the reconstruction).
_AVERAGED = ('bca', 'sr_plus', 'sr_minus', 'cfd', 'oracle_swap_mse_plus',
             'oracle_swap_mse_minus', 'oracle_identity_mse_plus',
             'oracle_identity_mse_minus', 'oracle_swap_region_mse_plus',
             'oracle_swap_region_mse_minus', 'oracle_identity_region_mse_plus',
             'oracle_identity_region_mse_minus', 'c_own_factors_score',
             'c_leakage', 'z_leakage', 'classifier_accuracy')


def _mean_sd(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values)
                         / (len(values) - 1))


def seed_summaries(records: dict) -> dict:
  """For every group of more than one row: the mean record (its 'sd' the
  sample standard deviations) of its seeds."""
  groups = {}
  for rec in records.values():
    groups.setdefault(rec['group'], []).append(rec)
  out = {}
  for group, recs in groups.items():
    if len(recs) < 2:
      continue
    labels = {}
    for label in recs[0]['labels']:
      mean, sd = {}, {}
      for key in _AVERAGED + ('sr',):
        values = [mean_sr(r['labels'][label]) if key == 'sr'
                  else r['labels'][label].get(key) for r in recs]
        mean[key], sd[key] = _mean_sd(values)
      mean.pop('sr')
      mean['fid'] = None
      labels[label] = {**mean, 'sd': sd}
    rec_mean, rec_sd = _mean_sd([r['reconstruction'] for r in recs])
    out[group] = {'label': f'{group}: mean of {len(recs)} seeds',
                  'group': group, 'step': recs[0]['step'],
                  'reconstruction': rec_mean, 'reconstruction_sd': rec_sd,
                  'labels': labels, 'seeds': len(recs)}
  return out


def spread_line(summary: dict, label: str) -> str:
  """'group: sd of SR(+) 0.01, ...' for one seed summary and label."""
  sd = summary['labels'][label]['sd']
  parts = [f'{name} {sd[key]:.3f}' for name, key in (
      ('SR(+)', 'sr_plus'), ('SR(-)', 'sr_minus'), ('SR', 'sr'),
      ('CFD', 'cfd'), ('c own', 'c_own_factors_score'),
      ('z leakage', 'z_leakage')) if sd.get(key) is not None]
  if summary.get('reconstruction_sd') is not None:
    parts.append(f'recon {summary["reconstruction_sd"]:.4f}')
  return (f'{summary["group"]} over {summary["seeds"]} seeds, standard '
          f'deviation: ' + ', '.join(parts))


def markdown_table(records, label: str, columns) -> list[str]:
  """One markdown table: a row per record, the given columns."""
  out = ['| row | steps | ' + ' | '.join(h for h, _ in columns) + ' |',
         '|' + '---|' * (len(columns) + 2)]
  for rec in records:
    m = rec['labels'][label]
    out.append(f'| {rec["label"]} | {rec["step"]} | '
               + ' | '.join(f(m, rec) for _, f in columns) + ' |')
  return out


def ranking(named_values: dict) -> str:
  """'A 0.91 > B 0.85 > ...' from {name: value}, missing values left out."""
  items = sorted(((v, k) for k, v in named_values.items() if v is not None),
                 reverse=True)
  return ' > '.join(f'{k} {100 * v:.1f}%' for v, k in items)


def run_table(root: str, config: str, table_rows_, steps, overrides,
              stem: str, extra_flags=()) -> dict:
  """Runs every row (resumably), writing ROOT/STEM.json after each; the
  records by row name."""
  summary_path = os.path.join(root, f'{stem}.json')
  previous = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      previous = json.load(f).get('rows', {})
  records = {}
  flags_ = [f'--config.{o}' for o in overrides] + list(extra_flags)
  for row in table_rows_:
    times = dict(previous.get(row.name, {}).get('times', {}))
    results = run_row(root, row, config, steps, flags_, times)
    records[row.name] = row_record(root, row, results, times)
    with open(summary_path, 'w') as f:  # After every row: resumable.
      json.dump({'config': config, 'steps': steps, 'overrides': overrides,
                 'rows': records}, f, indent=2)
  return records


def label_section(label: str, records: dict, summaries: dict, columns,
                  paper: dict, paper_name) -> list[str]:
  """The measured table of one label, the seeds' spread, the paper's
  rows and the two rankings by mean SR."""
  shown = list(records.values()) + list(summaries.values())
  out = [f'**{label}** (measured)', '']
  out += markdown_table(shown, label, columns)
  for s in summaries.values():
    out += ['', spread_line(s, label)]
  # Per model: its seeds' mean where there are several, else its one row.
  measured = {}
  for rec in records.values():
    group = rec['group']
    m = (summaries[group]['labels'][label] if group in summaries
         else rec['labels'][label])
    measured[paper_name(group)] = mean_sr(m)
  out += ['', f'Ranking by mean SR, measured: {ranking(measured)}.']
  paper = paper.get(label)
  if paper:
    out += paper_section(label, paper)
  out.append('')
  return out


def paper_section(label: str, paper: dict) -> list[str]:
  """The paper's ranking by mean SR and its rows for `label`
  ({model: numbers}, fractions)."""
  out = [f'Ranking by mean SR, paper: ' + ranking(
      {n: p.get('sr', mean_sr(p)) for n, p in paper.items()}) + '.',
         '', f'**{label}** (paper, real images)', '',
         '| model | BCA | SR(+) | SR(-) | SR | CFD | FID |', '|' + '---|' * 7]
  for name, p in paper.items():
    out.append(f'| {name} | {pct(p.get("bca"))} | {pct(p.get("sr_plus"))} | '
               f'{pct(p.get("sr_minus"))} | '
               f'{pct(p.get("sr", mean_sr(p)))} | {p["cfd"]:.3f} | '
               f'{p["fid"]:.2f} |')
  return out


def markdown(records: dict, note: str, paper: dict, paper_name,
             columns=None) -> str:
  """Per label: the measured rows (and seed means), the spread, the paper's
  rows (paper[label]: {model: numbers}) and the rankings by mean SR, the
  measured rows' groups named by paper_name(group)."""
  columns = columns or PAPER_COLUMNS + GROUND_TRUTH_COLUMNS
  summaries = seed_summaries(records)
  labels = list(next(iter(records.values()))['labels'])
  out = [note, '']
  for label in labels:
    out += label_section(label, records, summaries, columns, paper,
                         paper_name)
  return '\n'.join(out)


def add_extra_rows(records: dict, items) -> None:
  """Each NAME=WORKDIR of `items` (an evaluated run) as one more record."""
  for item in items:
    name, _, workdir = item.partition('=')
    with open(results_path(workdir)) as f:
      results = json.load(f)
    records[f'{name} (extra row)'] = {
        'label': f'{name} (extra row)', 'group': f'{name} (extra row)',
        'step': results['step'],
        'reconstruction': held_out_reconstruction(workdir),
        'labels': results['labels'], 'times': {}}


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


def rows(chosen: str) -> dict[str, Row]:
  """The rows a table can have: the four models, and the chosen CVQVAE."""
  out = {name: Row(name, (f'--config.model.name={name}',),
                          PAPER_NAMES[name] + (' (paper)' if name == 'cvqvae'
                                               else ''))
         for name in PAPER_NAMES}
  if chosen:
    out[f'cvqvae_{chosen}'] = Row(
        f'cvqvae_{chosen}',
        ('--config.model.name=cvqvae',) + recipe_flags(chosen),
        f'CVQVAE + {chosen}')
  return out


def default_models(chosen: str) -> list[str]:
  return ['cvqvae'] + ([f'cvqvae_{chosen}'] if chosen else []) + [
      'm2', 'ccvae', 'jdvae']


def table_rows(names, chosen: str, seeds) -> list[Row]:
  """`names` as rows, the CVQVAE ones once per seed."""
  known = rows(chosen)
  unknown = [n for n in names if n not in known]
  if unknown:
    sys.exit(f'Unknown rows {unknown}; known: {sorted(known)}.')
  out = []
  for name in names:
    row = known[name]
    out += (seeded(row, seeds) if name.startswith('cvqvae')
            and len(seeds) > 1 else [row])
  return out


def group_paper_name(group: str) -> str:
  """The paper's name of a row group ('cvqvae_RECIPE': 'CVQVAE + RECIPE')."""
  if group.startswith('cvqvae_'):
    return f'CVQVAE + {group[len("cvqvae_"):]}'
  return PAPER_NAMES.get(group, group)


# Table 1: letter -> (model.name, whether it trains the config's stage one),
# paper 2.4.
VARIANTS = {'A': ('vq_argmin', False), 'B': ('vq_entropy', False),
            'C': ('cvqvae', False), 'D': ('cgvae', False),
            'E': ('cvqvae', True), 'F': ('cgvae2', True)}
VARIANT_NAMES = {'A': 'A (VQ-VAE)', 'B': 'B: A + KLD', 'C': 'C: B + c',
                 'D': 'D: CGVAE', 'E': 'E: CVQVAE', 'F': 'F: CGVAE2'}
# The paper's Table 1 (CelebA glasses).
PAPER_TABLE1 = {'glasses': {VARIANT_NAMES[letter]: numbers
                            for letter, numbers in {
    'A': dict(sr_minus=0.9107, sr_plus=0.7226, cfd=0.200, fid=20.38),
    'B': dict(sr_minus=0.9346, sr_plus=0.7746, cfd=0.142, fid=20.03),
    'C': dict(sr_minus=0.9961, sr_plus=0.7691, cfd=0.112, fid=20.78),
    'D': dict(sr_minus=0.9999, sr_plus=0.6296, cfd=0.114, fid=21.27),
    'E': dict(sr_minus=1.0, sr_plus=0.7913, cfd=0.093, fid=20.05),
    'F': dict(sr_minus=0.9985, sr_plus=0.7283, cfd=0.097, fid=20.51)}.items()}}


def variant_row(letter: str) -> Row:
  name, two_step = VARIANTS[letter]
  flags_ = (f'--config.model.name={name}',)
  if not two_step:
    flags_ += ('--config.stage_one.model=',)
  return Row(letter, flags_, VARIANT_NAMES[letter])


# Table 3: the paper's CheXpert labels, and the stand-ins of this machine.
PATHOLOGIES = ('cardiomegaly', 'atelectasis', 'consolidation')
DIGITS_STEPS = 1000


def standin_flags(name: str, digits_dir: str) -> tuple[str, ...]:
  """configs/default.py's flags that make the stand-in `name`."""
  if name == 'big_head':
    return ("--config.data.labels=('big_head',)",)
  if name == 'is_seven':
    if not os.path.exists(os.path.join(digits_dir, 'labels.csv')):
      sys.exit(f'No {digits_dir}/labels.csv: write the digits first with '
               f'`python experiments/digits_csv.py --out={digits_dir}` '
               '(needs scikit-learn), or pass --digits_dir.')
    return ('--config.data.source=csv', '--config.data.name=digits',
            f'--config.data.data_dir={os.path.abspath(digits_dir)}',
            "--config.data.labels=('is_seven',)", '--config.data.channels=1',
            f'--config.num_train_steps={DIGITS_STEPS}',
            '--config.eval_every_steps=0')
  sys.exit(f'Unknown stand-in {name!r}; known: big_head, is_seven.')
