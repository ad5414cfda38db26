"""Two-step training (paper 2.4): stage two starts from stage one's C_phi and
tokens, keeps them frozen for freeze_steps, then trains everything."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cvqvae_jax import api
from cvqvae_jax import checkpointing
from cvqvae_jax import cli
from cvqvae_jax import objectives
from cvqvae_jax import optim
from cvqvae_jax import models
from cvqvae_jax import train
from cvqvae_jax import two_step
from cvqvae_jax.data import pipeline

from conftest import ROOT, TINY_FLAGS, subprocess_env, tiny_config


def test_optimizer_freezes_only_the_transferred_params():
  config = tiny_config(init_from='stage_one', freeze_steps=3)
  params = {'feature_net': {'head': {'kernel': jnp.ones((2, 2))}},
            'encoder': {'tokens_0': {'table': jnp.ones((3,))},
                        'block_0': {'conv_1': {'kernel': jnp.ones((3,))}}}}
  tx = optim.create_optimizer(config)
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(tx.update)
  history = [params]
  for _ in range(5):
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  head = [float(p['feature_net']['head']['kernel'][0, 0]) for p in history]
  token = [float(p['encoder']['tokens_0']['table'][0]) for p in history]
  conv = [float(p['encoder']['block_0']['conv_1']['kernel'][0])
          for p in history]
  lr = config.learning_rate
  # Frozen for the first 3 updates, then Adam's first step: exactly lr,
  # because the masked updates left its moments untouched.
  assert head[:4] == [1.0] * 4 and token[:4] == [1.0] * 4
  np.testing.assert_allclose(head[4], 1.0 - lr, rtol=1e-5)
  np.testing.assert_allclose(token[5], 1.0 - 2 * lr, rtol=1e-5)
  # Everything else trains from the first step.
  np.testing.assert_allclose(conv, [1.0 - i * lr for i in range(6)],
                             rtol=1e-5)


def test_without_freeze_steps_the_optimizer_is_plain_adam():
  config = tiny_config(init_from='stage_one', freeze_steps=0)
  params = {'feature_net': {'w': jnp.ones(2)}}
  state = optim.create_optimizer(config).init(params)
  assert jax.tree.structure(state) == jax.tree.structure(
      optax.adam(1.0).init(params))


@pytest.mark.parametrize('overrides,message', [
    ({'freeze_steps': -1, 'init_from': 'x'}, 'freeze_steps must be >= 0'),
])
def test_two_step_settings_that_cannot_work_are_errors(overrides, message,
                                                       tmp_path):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
  with pytest.raises(ValueError, match='this very run'):
    train.train_and_evaluate(tiny_config(init_from=str(tmp_path)),
                             str(tmp_path))


@pytest.fixture(scope='module')
def stage_one(tmp_path_factory):
  """A finished tiny CGVAE (approach D) run."""
  workdir = str(tmp_path_factory.mktemp('stage_one'))
  train.train_and_evaluate(tiny_config(**{'model.name': 'cgvae'}), workdir)
  return workdir


def _stage_two_config(stage_one_dir, **overrides):
  return tiny_config(init_from=stage_one_dir, freeze_steps=2,
                     num_train_steps=4, checkpoint_every_steps=1,
                     max_checkpoints_to_keep=10, **overrides)


def test_stage_two_starts_from_stage_one_and_thaws_after_freeze_steps(
    stage_one, tmp_path):
  workdir = str(tmp_path)
  config = _stage_two_config(stage_one)
  train.train_and_evaluate(config, workdir)

  setup = train.build(config)
  abstract, image_shape = setup.abstract_state, setup.image_shape
  stage_one_params, _ = checkpointing.restore_params(
      stage_one, abstract.params, select=two_step.is_transferred)
  manager = checkpointing.create_manager(workdir, 10)
  steps = {}
  for step in (1, 2, 3, 4):
    state = checkpointing.restore(manager, abstract, None,
                                  models.description(config, image_shape),
                                  step=step)
    steps[step] = checkpointing.flatten(state.params)

  def moved(a, b, paths):
    return [p for p in paths if not np.array_equal(a[p], b[p])]

  transferred = sorted(stage_one_params)
  others = sorted(set(steps[1]) - set(transferred))
  assert len(transferred) > 20 and 'codebook/embedding' in others
  # Equal to stage one through the freeze_steps = 2 frozen steps ...
  assert not moved(steps[1], stage_one_params, transferred)
  assert not moved(steps[2], stage_one_params, transferred)
  # ... then everything trains.
  assert moved(steps[3], stage_one_params, transferred) == transferred
  # The rest trains from the start.
  assert len(moved(steps[1], steps[2], others)) == len(others)

  with open(os.path.join(workdir, two_step.INIT_RECORD)) as f:
    record = json.load(f)
  assert record['stage_one_model'] == 'cgvae'
  assert record['restored'] == transferred
  assert record['initialised'] == others

  # Finished: its own model at num_train_steps or later; not with more
  # steps to go, nor where the latest checkpoint holds another model.
  assert two_step.finished(workdir, config)
  longer = _stage_two_config(stage_one)
  longer.num_train_steps = 5
  assert not two_step.finished(workdir, longer)
  assert not two_step.finished(stage_one, config)
  assert not two_step.finished(str(tmp_path / 'none'), config)


def test_warm_start_restores_every_path_and_shape_that_matches(stage_one):
  """stage_one.warm_start: beyond C_phi and the tokens, E_phi and D_theta's
  blocks come from the CGVAE stage one; the codebook (absent there) and
  D_theta's first dense kernel (S_z = 100 + tokens + f inputs there, the
  flattened z_q here) stay as initialised."""
  config = _stage_two_config(stage_one)
  setup = train.build(config)
  abstract = setup.abstract_state.params
  fresh = checkpointing.flatten(jax.tree.map(
      lambda a: np.full(a.shape, 7.0, a.dtype), abstract))
  saved, _ = checkpointing.restore_params(stage_one, abstract,
                                          only_matching=True)
  paper = checkpointing.flatten(two_step.initialise_from(
      stage_one, checkpointing.unflatten(fresh), abstract))
  warm = checkpointing.flatten(two_step.initialise_from(
      stage_one, checkpointing.unflatten(fresh), abstract, warm_start=True))

  def from_stage_one(params):
    return sorted(k for k, v in params.items() if not np.all(v == 7.0))

  transferred = sorted(k for k in fresh if two_step.is_transferred(k))
  assert from_stage_one(paper) == transferred
  assert from_stage_one(warm) == sorted(saved)
  assert set(transferred) < set(saved)
  assert 'encoder/block_0/conv_1/kernel' in saved
  assert 'decoder/block_4/conv_2/kernel' in saved
  assert 'decoder/to_image/kernel' in saved
  assert set(fresh) - set(saved) == {'codebook/embedding',
                                     'decoder/dense/kernel'}
  for k in saved:
    np.testing.assert_array_equal(warm[k], saved[k])
  # The variant's name says what was trained.
  config.stage_one.warm_start = True
  assert two_step.variant(config).endswith('stage-one E_phi and D_theta kept')


def test_stage_one_that_does_not_fit_names_the_paths_and_shapes(stage_one):
  config = _stage_two_config(stage_one, **{'model.num_features': 5})
  abstract = train.build(config).abstract_state
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    two_step.initialise_from(stage_one, abstract.params, abstract.params)
  message = str(error.value)
  # N_c 3 -> 5: the head has (2 labels x 2 + 3 + 2 x 3) = 13 outputs in stage
  # one, (4 + 5 + 10) = 19 here.
  assert 'feature_net/head/kernel: checkpoint (128, 13), model (128, 19)' in message
  assert "model 'cgvae'" in message and 'N_c 3' in message

  config = _stage_two_config(stage_one, **{'data.labels': ('glasses',)})
  abstract = train.build(config).abstract_state
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r'encoder/tokens_0/table: checkpoint \(2, 2, 16, '
                     r'16\), model \(1, 2, 16, 16\)'):
    two_step.initialise_from(stage_one, abstract.params, abstract.params)


def test_missing_stage_one_names_the_path_it_looked_in(tmp_path):
  config = _stage_two_config(str(tmp_path / 'nowhere'))
  abstract = train.build(config).abstract_state
  with pytest.raises(FileNotFoundError,
                     match=str(tmp_path / 'nowhere' / 'checkpoints')):
    two_step.initialise_from(config.init_from, abstract.params,
                             abstract.params)


def test_cli_trains_f_from_a_d_workdir(stage_one, tmp_path):
  """`--config.init_from=DIR --config.freeze_steps=N` from the command line,
  then --mode=evaluate on the stage-two workdir; and a missing stage one is
  a message, not a traceback."""
  def main(*args):
    return subprocess.run(
        [sys.executable, '-m', 'cvqvae_jax.main', '--config=configs/default.py',
         *TINY_FLAGS, '--config.num_train_steps=2', *args],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
        timeout=600, check=False)

  workdir = str(tmp_path / 'f')
  proc = main(f'--workdir={workdir}', '--config.model.name=cgvae2',
              f'--config.init_from={stage_one}', '--config.freeze_steps=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  # What came from stage one's last checkpoint, and what started fresh.
  with open(os.path.join(workdir, 'init_from.json')) as f:
    record = json.load(f)
  assert record['init_from'] == stage_one
  assert record['checkpoint'] == f'{stage_one}/checkpoints/4'
  assert record['stage_one_model'] == 'cgvae'
  assert 'feature_net/head/kernel' in record['restored']
  assert all(two_step.is_transferred(p) for p in record['restored'])
  assert not any(two_step.is_transferred(p) for p in record['initialised'])
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(l) for l in f]
  assert [r['step'] for r in records if 'loss' in r] == [1, 2]
  # Evaluation reads the parameters only: it needs neither init_from nor
  # freeze_steps, whose optimizer state differs.
  proc = main(f'--workdir={workdir}', '--config.model.name=cgvae2',
              '--mode=evaluate')
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    results = json.load(f)
  assert results['model'] == 'cgvae2' and results['step'] == 2
  assert set(results['labels']) == {'glasses', 'smile'}
  row = results['labels']['glasses']
  assert row['num_pairs'] == 8 and set(row) >= {'bca', 'sr_plus', 'cfd'}
  for key in ('sr_plus', 'sr_minus'):  # Shares of num_pairs fakes.
    count = row[key] * row['num_pairs']
    assert abs(count - round(count)) < 1e-4, (key, row[key])

  missing = str(tmp_path / 'no_stage_one')
  proc = main(f'--workdir={tmp_path / "e"}', f'--config.init_from={missing}')
  assert proc.returncode == 1
  assert f'No checkpoints in {missing}/checkpoints' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_one_main_call_trains_both_stages_and_a_kill_in_stage_two_resumes(
    tmp_path):
  """The default config trains E: stage one (D) for stage_one.share of the
  steps, then CVQVAE from its C_phi and tokens, in one workdir. SIGKILL in
  stage two, then the same command: stage two resumes from its own
  checkpoint and stage one is not trained again."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'e'
  args = [sys.executable, '-m', 'cvqvae_jax.main',
          '--config=configs/default.py', f'--workdir={workdir}', *TINY_FLAGS,
          '--config.num_train_steps=60', '--config.stage_one.share=0.05',
          '--config.freeze_steps=2', '--config.checkpoint_every_steps=2',
          '--config.max_checkpoints_to_keep=3']
  # Files, not pipes: nobody reads a pipe while the run goes, and a full one
  # (orbax logs every save) would block the child.
  log = open(tmp_path / 'first.log', 'w+')  # pylint: disable=consider-using-with
  proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=log, text=True,
                          env=subprocess_env())
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 300
  steps = []
  while time.time() < deadline and not any(s >= 9 for s in steps):
    time.sleep(0.2)
    if metrics.exists():
      steps = [json.loads(l)['step'] for l in metrics.read_text().split('\n')
               if l.strip()]
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  log.close()
  err = (tmp_path / 'first.log').read_text()
  saved = sorted(int(s) for s in os.listdir(workdir / 'checkpoints')
                 if s.isdigit())  # Not a save cut short by the kill.
  assert saved and 3 < saved[-1] < 60, (saved, err[-3000:])
  # Killed in stage two, which had started from stage one's last step.
  config = api.load_config(str(workdir))
  assert two_step.latest_stage(str(workdir), config)[:2] == (saved[-1],
                                                             two_step.MODEL)
  init_record = workdir / two_step.INIT_RECORD
  assert json.loads(init_record.read_text())['checkpoint'].endswith(
      'checkpoints/3')
  init_written = init_record.stat().st_mtime_ns
  # Logged so far (a step trained again would log another steps_per_second).
  trained = [l for l in metrics.read_text().split('\n')
             if l.strip() and json.loads(l)['step'] <= saved[-1]]

  done = subprocess.run(args, cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  # Resumed from its own latest checkpoint: the steps up to it (stage
  # one's among them) are not trained again, nor is stage two started
  # again from stage one (init_from.json would be written anew).
  assert [l for l in metrics.read_text().split('\n')
          if l.strip() and json.loads(l)['step'] <= saved[-1]] == trained
  assert init_record.stat().st_mtime_ns == init_written
  assert two_step.finished(str(workdir), config)
  records = [json.loads(l) for l in metrics.read_text().split('\n')
             if l.strip()]
  # The console's summary is that of the final evaluation.
  final = {k: v for k, v in records[-1].items()
           if k not in ('step', 'steps_per_second')}
  assert records[-1]['step'] == 60 and 'eval_reconstruction_mse' in final
  assert cli.summary(str(workdir), 60, final, two_step.variant(config)) \
      in done.stdout
  # Every step is logged once.
  train_steps = [r['step'] for r in records if 'loss' in r]
  assert train_steps == list(range(1, 61))
  # Stage one logs the Gaussian KL and no code usage; stage two its codes.
  assert all('code_perplexity' not in r for r in records
             if 'loss' in r and r['step'] <= 3)
  assert all('code_perplexity' in r for r in records
             if 'loss' in r and r['step'] > 3)
  with open(workdir / 'config.json') as f:
    assert json.load(f)['model']['name'] == 'cvqvae'
  assert json.loads(init_record.read_text())['stage_one_model'] == 'cgvae'



@pytest.mark.parametrize('overrides', [
    {'stage_one.model': ''},                        # C
    {'model.name': 'vq_argmin'}, {'model.name': 'cgvae'}])  # A, D
def test_freeze_steps_applies_to_a_stage_two_only(overrides):
  """The default freeze_steps (300) freezes nothing in a one-stage run."""
  config = tiny_config(**overrides)
  assert config.freeze_steps == 300 and not two_step.is_stage_two(config)
  params = {'feature_net': {'w': jnp.ones(2)}, 'decoder': {'w': jnp.ones(2)}}
  tx = optim.create_optimizer(config)
  updates, _ = tx.update({'feature_net': {'w': jnp.ones(2)},
                          'decoder': {'w': jnp.ones(2)}}, tx.init(params))
  assert float(jnp.abs(updates['feature_net']['w']).min()) > 0.0
  assert two_step.is_stage_two(tiny_config())  # E: its own stage one


def test_stage_one_settings_and_variant_names():
  config = tiny_config(num_train_steps=10)
  assert two_step.has_stage_one(config)
  assert config.stage_one.share == 0.3
  assert two_step.stage_one_steps(config) == 3
  one = two_step.stage_one_config(config)
  assert (one.model.name, one.num_train_steps, one.freeze_steps,
          one.init_from, one.stage_one.model) == ('cgvae', 3, 0, '', '')
  assert two_step.variant(config) == 'E (CVQVAE, two-step)'
  assert two_step.variant(one) == 'D (CGVAE)'
  one_stage = tiny_config(**{'stage_one.model': ''})
  assert not two_step.has_stage_one(one_stage)
  assert two_step.variant(one_stage) == 'C (CVQVAE, one stage)'
  for name, letter in (('vq_argmin', 'A'), ('vq_entropy', 'B'),
                       ('cgvae', 'D')):
    other = tiny_config(**{'model.name': name})
    assert not two_step.has_stage_one(other)
    assert two_step.variant(other).startswith(letter)
  assert two_step.variant(tiny_config(**{'model.name': 'cgvae2'})).startswith(
      'F')
  # An external stage one replaces the run's own.
  assert not two_step.has_stage_one(tiny_config(init_from='/x'))
  # Too few steps for a stage one: one stage.
  assert not two_step.has_stage_one(tiny_config(num_train_steps=1))


@pytest.mark.parametrize('overrides,message', [
    ({'stage_one.share': 1.0}, 'stage_one.share'),
    ({'stage_one.model': 'vq_argmin'}, 'stage_one.model must be one of'),
])
def test_stage_one_errors(overrides, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))


@pytest.mark.parametrize('name', ['vq_argmin', 'vq_entropy'])
def test_variants_a_and_b_train_a_few_steps(name):
  """A and B through the real pipeline and train step (C, D, E and F are
  trained by the tests above and in test_train)."""
  config = tiny_config(**{'model.name': name})
  setup = train.build(config)
  model, init = setup.model, setup.init
  state = jax.jit(init)(jax.random.key(0))
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   objective=config.objective))
  batches = iter(pipeline.create_train_dataset(config))
  params0 = state.params
  kls = []
  for _ in range(3):
    state, metrics = step(state, next(batches), jax.random.key(1))
    assert all(np.isfinite(float(metrics[k]))
               for k in objectives.logged_terms())
    kls.append(float(metrics['kl']))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params0,
                       state.params)
  assert all(jax.tree.leaves(moved['decoder']))
  assert any(jax.tree.leaves(moved['encoder']))
  if name == 'vq_argmin':  # one-hot posterior: KL = N_z^2 log K, constant
    np.testing.assert_allclose(kls, [16 * np.log(16)] * 3, rtol=1e-5)  # float32
  else:
    assert all(0.0 < kl < 16 * np.log(16) for kl in kls)
