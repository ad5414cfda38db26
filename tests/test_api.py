"""From a trained workdir to an edited image of one's own (cvqvae_jax.load),
pictures during training, and the command line's console."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import cvqvae_jax
from cvqvae_jax import checkpointing
from cvqvae_jax import cli
from cvqvae_jax import models
from cvqvae_jax import evaluation
from cvqvae_jax import train
from cvqvae_jax import two_step

from conftest import ROOT, subprocess_env, tiny_config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """The default two-step recipe (stage one for step 1, then CVQVAE to step
  4) with pictures every 2 steps."""
  workdir = str(tmp_path_factory.mktemp('run'))
  config = tiny_config(sample_every_steps=2)
  train.train_and_evaluate(config, workdir)
  return workdir, config


def test_samples_during_training_go_to_files_and_tensorboard(trained):
  workdir, _ = trained
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
      'step_2.png', 'step_4.png']
  with Image.open(os.path.join(workdir, 'samples', 'step_4.png')) as image:
    # 2 + 5 rows per label (x0, x1, fake+, ideal+, fake-, ideal-) of 96 px.
    assert image.height > 12 * 96
  events = b''.join(
      open(os.path.join(workdir, f), 'rb').read()
      for f in os.listdir(workdir) if f.startswith('events.out'))
  assert b'samples' in events and b'\x89PNG' in events  # A TB image.


def _state_params(workdir, config):
  manager = checkpointing.create_manager(workdir, 2)
  setup = train.build(config)
  state = checkpointing.restore(
      manager, setup.abstract_state, None,
      models.description(config, setup.image_shape))
  manager.close()
  return int(state.step), state.params


def test_load_returns_the_final_model_and_edits_an_own_image(trained,
                                                            tmp_path):
  workdir, config = trained
  m = cvqvae_jax.load(workdir)
  assert m.step == 4 and m.image_shape == (16, 16, 3)
  assert json.loads(m.config.to_json()) == json.load(
      open(os.path.join(workdir, 'config.json')))
  assert m.config.model.name == 'cvqvae' and m.labels == ('glasses', 'smile')
  assert m.config.model.encoder_widths == (8, 8, 8, 8, 8)  # tuples again
  step, params = _state_params(workdir, config)
  assert step == 4
  for a, b in zip(jax.tree.leaves(m.params), jax.tree.leaves(params),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A user's own pictures: any size, colour or grey.
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).save(
      tmp_path / 'me.png')
  Image.fromarray(rng.integers(0, 256, (20, 20), np.uint8)).save(
      tmp_path / 'grey.jpg')
  x = m.read_images(str(tmp_path / 'me.png'), str(tmp_path / 'grey.jpg'))
  assert x.shape == (2, 16, 16, 3) and -1 <= x.min() < x.max() <= 1
  # One path, several, a list or a tuple (of str or pathlib paths).
  both = [tmp_path / 'me.png', str(tmp_path / 'grey.jpg')]
  np.testing.assert_array_equal(m.read_images(both), x)
  np.testing.assert_array_equal(m.read_images(tuple(both)), x)
  np.testing.assert_array_equal(m.read_images(both[0]), x[:1])
  with pytest.raises(ValueError, match='at least one image path'):
    m.read_images([])
  codes = m.encode(x)
  with_glasses = m.decode(m.set_label(codes, 'glasses', 1))
  without = m.decode(m.set_label(codes, 'glasses', 0))
  assert with_glasses.shape == x.shape
  assert np.abs(np.asarray(with_glasses) - np.asarray(without)).max() > 0
  np.testing.assert_array_equal(codes['y'][:, 1], m.set_label(
      codes, 'glasses', 1)['y'][:, 1])  # smile untouched
  swapped = m.swap(x[:1], x[1:], 'smile')
  assert swapped.shape == (1, 16, 16, 3)
  path = m.save_images(with_glasses, str(tmp_path / 'out.png'))
  with Image.open(path) as image:
    assert image.size == (32, 16)
  with pytest.raises(ValueError, match="Unknown label 'glases'"):
    m.set_label(codes, 'glases', 1)


def test_load_of_a_run_still_in_stage_one_gives_stage_one(tmp_path,
                                                         monkeypatch):
  config = tiny_config()
  one = two_step.stage_one_config(config)
  # Preempted at stage one's last step: it saves, and stage two never starts.
  monkeypatch.setattr(checkpointing.PreemptionGuard, 'should_stop',
                      lambda self, step: step == one.num_train_steps)
  assert train.train_and_evaluate(config, str(tmp_path)) == {}
  m = cvqvae_jax.load(str(tmp_path))
  assert m.config.model.name == 'cgvae' and m.step == one.num_train_steps
  # The one answer to "which stage is this checkpoint in", for each config.
  stage = lambda c: two_step.latest_stage(str(tmp_path), c)[:2]
  assert stage(config) == (one.num_train_steps, two_step.STAGE_ONE)
  assert stage(one) == (one.num_train_steps, two_step.MODEL)
  assert stage(tiny_config(**{'model.name': 'vq_argmin'})) == (
      one.num_train_steps, two_step.OTHER)
  assert two_step.latest_stage(str(tmp_path / 'none'), config) == (
      None, None, None)
  assert two_step.finished(str(tmp_path), one)
  assert not two_step.finished(str(tmp_path), config)
  # Evaluating the two-step config names the stage and what to do, rather
  # than listing how stage one's checkpoint differs from stage two's model.
  with pytest.raises(ValueError, match=(
      rf"latest checkpoint of .* \(step {one.num_train_steps}\) is stage "
      r"one's \(D \(CGVAE\)\).*Run the training command again")):
    cli.run_offline('evaluate', config, str(tmp_path))


def test_load_without_a_run_names_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match='No config.json'):
    cvqvae_jax.load(str(tmp_path))


def _main(*args):
  return subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main', *args], cwd=ROOT,
      capture_output=True, text=True, timeout=600, env=subprocess_env())


def test_evaluate_mode_reads_the_workdirs_config_and_stays_quiet(trained):
  workdir, _ = trained
  proc = _main(f'--workdir={workdir}', '--mode=evaluate')
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.load(open(os.path.join(workdir, 'eval', 'results.json')))
  assert results['step'] == 4 and set(results['labels']) == {'glasses',
                                                             'smile'}
  console = proc.stdout + proc.stderr
  assert [l for l in console.splitlines()
          if 'orbax' in l.lower() or 'xla_bridge' in l] == []
  assert evaluation.format_table(results) in proc.stdout


def test_console_errors_are_one_line():
  proc = _main('--config=configs/default.py', '--workdir=/tmp/unused',
               '--config.num_train_step=3')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: --config.num_train_step: the config has no field "
      "'num_train_step'. Did you mean 'num_train_steps'? (Every field is in "
      "configs/default.py.)"]
  proc = _main('--workdir=/tmp/unused')  # train needs --config
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: --config is required to train: --config=configs/NAME.py (see '
      '--help).']
  helped = _main('--help')
  assert '--config.FIELD=VALUE' in helped.stdout
  assert 'celeba_glasses' in helped.stdout and '--verbose' in helped.stdout
