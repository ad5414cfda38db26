"""experiments/tables.py: the rows, seeds, resuming and markdown that the
Table 1-3 scripts share (no training: child processes are replaced)."""

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'experiments'))
import tables  # pylint: disable=g-import-not-at-top,wrong-import-position


def _results(step, **labels):
  return {'step': step, 'labels': labels}


def _write_evaluated(workdir, step, labels, recon=None):
  os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
  with open(tables.results_path(workdir), 'w') as f:
    json.dump(_results(step, **labels), f)
  if recon is not None:
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': step, 'loss': 1.0}) + '\n')
      f.write(json.dumps({'step': step, 'eval_reconstruction_mse': recon})
              + '\n')


def test_recipe_flags_are_the_recipe_of_configs_default():
  from configs import default  # pylint: disable=g-import-not-at-top
  flags_ = tables.recipe_flags('hsic_film')
  assert flags_ == tuple(f'--config.{k}={v}' for k, v in
                         default.RECIPES['hsic_film'].items())
  assert '--config.model.feature_film=True' in flags_
  assert tables.recipe_flags('') == ()


def test_rows_seeds_only_the_cvqvae_rows():
  rows = tables.table_rows(['cvqvae', 'cvqvae_hsic_film', 'm2'],
                           'hsic_film', [0, 1, 2])
  assert [r.name for r in rows] == [
      'cvqvae', 'cvqvae_seed1', 'cvqvae_seed2', 'cvqvae_hsic_film',
      'cvqvae_hsic_film_seed1', 'cvqvae_hsic_film_seed2', 'm2']
  assert rows[0].flags == ('--config.model.name=cvqvae',)  # seed 0: config's
  assert rows[2].flags[-1] == '--config.seed=2'
  assert {r.group for r in rows[3:6]} == {'cvqvae_hsic_film'}
  assert rows[6].flags == ('--config.model.name=m2',)
  assert tables.group_paper_name('cvqvae_hsic_film') == 'CVQVAE + hsic_film'
  with pytest.raises(SystemExit, match='Unknown rows'):
    tables.table_rows(['cvqvae', 'vae'], 'hsic_film', [0])


def test_seed_summaries_mean_and_sample_sd():
  records = {}
  for name, sr_plus, z, recon in (('a', 0.8, 0.5, 0.02), ('a_seed1', 0.9, 0.7,
                                                          0.04)):
    records[name] = {'label': name, 'group': 'a', 'step': 10,
                     'reconstruction': recon,
                     'labels': {'glasses': {'sr_plus': sr_plus,
                                            'sr_minus': 0.6,
                                            'z_leakage': z}}}
  records['b'] = {'label': 'b', 'group': 'b', 'step': 10,
                  'reconstruction': 0.01,
                  'labels': {'glasses': {'sr_plus': 0.1, 'sr_minus': 0.2}}}
  summaries = tables.seed_summaries(records)
  assert list(summaries) == ['a']  # one-row groups have no summary
  m = summaries['a']['labels']['glasses']
  assert m['sr_plus'] == pytest.approx(0.85)
  assert m['sd']['sr_plus'] == pytest.approx(math.sqrt(0.005))
  assert m['sd']['sr_minus'] == pytest.approx(0.0)
  assert m['sd']['sr'] == pytest.approx(math.sqrt(0.00125))  # (0.7, 0.75)
  assert m['z_leakage'] == pytest.approx(0.6)
  assert summaries['a']['reconstruction'] == pytest.approx(0.03)
  assert m['bca'] is None  # absent in every seed
  text = tables.markdown(records, 'note', tables.PAPER,
                         tables.group_paper_name)
  assert '| a: mean of 2 seeds | 10 |' in text
  assert 'a over 2 seeds, standard deviation: SR(+) 0.071' in text
  # The ranking uses a's seed mean (72.5 %), b's one row (15 %).
  assert 'measured: a 72.5% > b 15.0%.' in text
  assert 'paper: CVQVAE 89.6% > JDVAE 79.6% > CCVAE 71.7% > M2 56.7%.' in text


def test_ground_truth_columns_are_shares_of_the_identity_error():
  m = {'oracle_swap_mse_plus': 0.01, 'oracle_identity_mse_plus': 0.04,
       'oracle_swap_mse_minus': 0.03, 'oracle_identity_mse_minus': 0.02,
       'oracle_swap_region_mse_plus': 0.1, 'oracle_identity_region_mse_plus':
       0.3, 'c_own_factors_score': 0.25}
  cells = {h: f(m, {'reconstruction': None})
           for h, f in tables.GROUND_TRUTH_COLUMNS}
  assert cells['swap / identity + / -'] == '0.25 / 1.50'
  assert cells['region swap / identity + / -'] == 'n/a'  # no minus region
  assert cells['c own'] == '0.250'
  assert cells['recon'] == 'n/a'
  assert tables.ratio({'a': 1.0, 'b': 0.0}, 'a', 'b') is None


def test_run_row_skips_evaluated_rows_and_runs_the_others(tmp_path,
                                                          monkeypatch):
  calls = []

  def fake_run(args, log_path):
    calls.append(args)
    workdir = next(a for a in args if a.startswith('--workdir='))
    workdir = workdir.split('=', 1)[1]
    if '--mode=evaluate' in args:
      _write_evaluated(workdir, 7, {'glasses': {'sr_plus': 0.5}}, recon=0.02)
    assert log_path.startswith(workdir)
    return 1.5

  monkeypatch.setattr(tables, '_run', fake_run)
  root = str(tmp_path)
  done = tables.Row('done', ('--config.model.name=m2',))
  _write_evaluated(os.path.join(root, 'done'), 7, {'glasses': {}})
  todo = tables.Row('todo', ('--config.model.name=m2', '--config.seed=1'))
  records = tables.run_table(root, 'configs/default.py', [done, todo], 7,
                             ['eval_every_steps=0'], 'table')
  assert len(calls) == 2  # only `todo`: train, then evaluate
  assert calls[0][-1] == '--mode=train' and calls[1][-1] == '--mode=evaluate'
  assert calls[0][:-1] == [
      '--config=configs/default.py', f'--workdir={root}/todo',
      '--config.model.name=m2', '--config.seed=1',
      '--config.eval_every_steps=0', '--config.num_train_steps=7']
  assert os.path.realpath(os.path.join(root, 'todo', 'classifier')) == (
      os.path.realpath(os.path.join(root, 'classifier')))
  assert records['todo']['reconstruction'] == 0.02
  assert records['todo']['times'] == {'train_seconds': 1.5,
                                      'evaluate_seconds': 1.5}
  with open(os.path.join(root, 'table.json')) as f:
    assert list(json.load(f)['rows']) == ['done', 'todo']
  # A rerun skips both; a row evaluated at other steps is run again.
  calls.clear()
  tables.run_table(root, 'configs/default.py', [done, todo], 7, [], 'table')
  assert not calls
  tables.run_table(root, 'configs/default.py', [done], 8, [], 'table')
  assert [c[-1] for c in calls] == ['--mode=train', '--mode=evaluate']


def test_reuse_copies_only_runs_evaluated_at_the_steps(tmp_path, capsys):
  source = str(tmp_path / 'run')
  _write_evaluated(source, 5, {'glasses': {}})
  os.makedirs(os.path.join(source, 'classifier'))
  root = str(tmp_path / 'table')
  tables.reuse(root, [f'cvqvae={source}', f'm2={source}'], 5)
  assert tables.evaluated_at(os.path.join(root, 'cvqvae')) == 5
  assert os.path.islink(os.path.join(root, 'cvqvae', 'classifier'))
  tables.reuse(root, [f'ccvae={source}'], 6)
  assert not os.path.exists(os.path.join(root, 'ccvae'))
  assert 'ccvae is trained instead' in capsys.readouterr().out


def test_table1_variants_and_table3_stand_ins(tmp_path):
  with pytest.raises(SystemExit, match='digits_csv.py --out='):
    tables.standin_flags('is_seven', str(tmp_path))
  (tmp_path / 'labels.csv').write_text('path,is_seven\n')
  flags_ = tables.standin_flags('is_seven', str(tmp_path))
  assert f'--config.data.data_dir={tmp_path}' in flags_
  assert "--config.data.labels=('big_head',)" in tables.standin_flags(
      'big_head', '')
  assert tables.variant_row('A').flags == ('--config.model.name=vq_argmin',
                                           '--config.stage_one.model=')
  assert tables.variant_row('F').flags == ('--config.model.name=cgvae2',)
