"""End to end: the workdir contract, exact resumption, the errors."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cvqvae_jax import checkpointing
from cvqvae_jax import classifier
from cvqvae_jax import cli
from cvqvae_jax import evaluation
from cvqvae_jax import inception
from cvqvae_jax import metric_writers
from cvqvae_jax import metrics
from cvqvae_jax import objectives
from cvqvae_jax import models
from cvqvae_jax import profiling
from cvqvae_jax import train
from cvqvae_jax.data import pipeline

from conftest import ROOT, TINY_FLAGS, subprocess_env, tiny_config


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f]


def _params(workdir, config):
  manager = checkpointing.create_manager(workdir, 2)
  setup = train.build(config)
  state = checkpointing.restore(manager, setup.abstract_state, None,
                                models.description(config,
                                                        setup.image_shape))
  return int(state.step), state.params


def _one_stage(**overrides):
  """The loop's contract on one model (C): the default two-step recipe
  splits 4 and 6 steps differently, so a resumed run would not equal a
  straight one (tests/test_two_step.py covers the two stages)."""
  return tiny_config(**{'stage_one.model': '', **overrides})


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """4 steps, then resumed to 6: shared by the contract tests."""
  workdir = str(tmp_path_factory.mktemp('run'))
  first = train.train_and_evaluate(_one_stage(), workdir)
  after_first = _records(workdir)
  train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  return workdir, first, after_first


def test_workdir_contract(trained):
  workdir, results, after_first = trained
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '6']
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['model']['name'] == 'cvqvae'
  assert config['num_train_steps'] == 6
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert os.path.getsize(os.path.join(workdir, 'samples.png')) > 1000
  assert 0.0 < results['eval_reconstruction_mse'] < 4.0
  # What the first run returned is what it logged at its last step.
  final = [r for r in after_first if 'eval_accuracy_glasses' in r][-1]
  assert final['step'] == 4
  for key, value in results.items():
    np.testing.assert_allclose(final[key], value, rtol=1e-6, err_msg=key)


def _independent_accuracies(config, params, label: int):
  """(balanced accuracy, accuracy) of argmax q(y|x) for one label on the
  evaluated test images, computed here from scratch."""
  model = train.build(config).model
  batch = next(iter(pipeline.create_eval_dataset(
      config, 'test', batch_size=config.eval.num_examples)))
  logits, _ = model.apply({'params': params}, batch['image'],
                          method='classify')
  pred = np.argmax(np.asarray(logits)[:, label], -1)
  y = batch['label'][:, label]
  recalls = [np.mean(pred[y == v] == v) for v in (0, 1) if (y == v).any()]
  return float(np.mean(recalls)), float(np.mean(pred == y))


class _StubFIDFeatures:
  """Stands in for the FID InceptionV3 (tests/test_inception.py tests it)."""

  def __init__(self, path, batch_size):
    assert path == 'stub.npz' and batch_size > 0

  def statistics(self, images):
    return metrics.feature_statistics(np.asarray(images)[:, ::4, ::4, 0]
                                      .reshape(len(images), -1))


def test_evaluate_and_figures_modes_read_the_latest_checkpoint(
    trained, tmp_path, capsys, monkeypatch):
  workdir, _, _ = trained
  config = tiny_config(num_train_steps=6)
  # Which independent classifiers are trained: (label, steps).
  trainings = []
  train_classifier = classifier.train

  def recorded(config, label_index, *args):
    trainings.append((config.data.labels[label_index],
                      config.eval.classifier_steps))
    return train_classifier(config, label_index, *args)
  monkeypatch.setattr(classifier, 'train', recorded)
  results = cli.run_offline('evaluate', config, workdir)
  assert trainings == [('glasses', 4), ('smile', 4)]
  # The console gets the table of the results, and nothing else.
  printed = capsys.readouterr().out
  assert printed.startswith(evaluation.format_table(results) + '\n')
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    assert json.load(f) == results
  assert (results['model'], results['dataset'], results['step']) == (
      'cvqvae', 'procedural', 6)
  assert set(results['labels']) == {'glasses', 'smile'}
  record = [r for r in _records(workdir)
            if 'eval_glasses_oracle_swap_mse_plus' in r][-1]
  _, params = _params(workdir, _one_stage(num_train_steps=6))
  for l, (name, row) in enumerate(results['labels'].items()):
    bca, accuracy = _independent_accuracies(config, params, l)
    np.testing.assert_allclose([row['bca'], row['accuracy']],
                               [bca, accuracy], rtol=1e-6)
    for key in ('sr_plus', 'sr_minus'):  # Shares of num_pairs fakes.
      count = row[key] * row['num_pairs']
      assert abs(count - round(count)) < 1e-4, (name, key, row[key])
    assert row['cfd'] >= 0 and row['classifier_fd'] >= 0
    assert row['fid'] is None  # No Inception weights configured.
    # The same parameters and pairs as the step-6 evaluation of training.
    for key in ('oracle_swap_mse_plus', 'oracle_swap_mse_minus',
                'oracle_identity_mse_plus', 'oracle_identity_mse_minus'):
      np.testing.assert_allclose(row[key], record[f'eval_{name}_{key}'],
                                 rtol=1e-5)
  # The classifiers are cached: a second evaluation trains nothing.
  cached = glob.glob(os.path.join(workdir, 'classifier', '*'))
  assert len(cached) == 2
  trainings.clear()
  again = cli.run_offline('evaluate', config, workdir)
  assert trainings == []
  assert again == results
  # Another classifier config is not silently reused. (And with weights
  # given, FID is reported: a stand-in feature network keeps this fast.)
  other = tiny_config(num_train_steps=6, **{'eval.classifier_steps': 2,
                                            'eval.fid_weights': 'stub.npz'})
  monkeypatch.setattr(inception, 'FIDFeatures', _StubFIDFeatures)
  with_fid = cli.run_offline('evaluate', other, workdir)
  assert trainings == [('glasses', 2), ('smile', 2)]
  assert len(glob.glob(os.path.join(workdir, 'classifier', '*'))) == 4
  for row in with_fid['labels'].values():
    assert row['fid'] > 0

  out = cli.run_offline('figures', config, workdir)
  assert out['samples'] == os.path.join(workdir, 'figures', 'samples.png')
  expected = {'swaps_glasses', 'swaps_smile', 'difference_glasses',
              'interpolation_glasses_y1', 'interpolation_smile_y0',
              'interpolation_smile_y1', 'scaling_glasses', 'scaling_smile',
              'multi_swap', 'samples'}
  assert expected <= set(out), sorted(out)
  for path in out.values():
    assert path.startswith(os.path.join(workdir, 'figures'))
    assert os.path.getsize(path) > 1000
  with pytest.raises(FileNotFoundError, match='train first'):
    cli.run_offline('evaluate', config, str(tmp_path))


def test_metrics_log_every_term_once_per_step_across_resume(trained):
  workdir, _, after_first = trained
  records = _records(workdir)
  train_steps = [r['step'] for r in records if 'loss' in r]
  assert train_steps == [2, 4, 6]
  assert [r['step'] for r in after_first if 'loss' in r] == [2, 4]
  for r in records:
    if 'loss' in r:
      assert set(objectives.logged_terms()) <= set(r)
      assert all(np.isfinite(r[k]) for k in objectives.logged_terms())
      expected = (r['reconstruction'] + 1e-4 * r['kl'] + r['classification']
                  + r['codebook'] + 0.25 * r['commitment'])
      np.testing.assert_allclose(r['loss'], expected, rtol=1e-4)
  eval_steps = [r['step'] for r in records if 'eval_reconstruction_mse' in r]
  assert eval_steps == [4, 6]


def test_resumed_run_equals_uninterrupted_run(trained, tmp_path):
  workdir, _, _ = trained
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(_one_stage(num_train_steps=6), straight)
  step_a, resumed = _params(workdir, _one_stage(num_train_steps=6))
  step_b, uninterrupted = _params(straight, _one_stage(num_train_steps=6))
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_replayed_steps_are_not_logged_twice(tmp_path):
  workdir = str(tmp_path)
  config = tiny_config(num_train_steps=4, checkpoint_every_steps=2,
                       log_every_steps=1)
  train.train_and_evaluate(config, workdir)
  # A preemption after step 3's log but before the step-4 checkpoint.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '4'))
  train.train_and_evaluate(config, workdir)
  steps = [r['step'] for r in _records(workdir) if 'loss' in r]
  assert steps == [1, 2, 3, 4]


def test_checkpoint_of_another_model_is_a_clear_error(trained):
  workdir, _, _ = trained
  config = tiny_config(num_train_steps=8, **{'model.num_codes': 32})
  with pytest.raises(checkpointing.CheckpointMismatchError) as info:
    train.train_and_evaluate(config, workdir)
  message = str(info.value)
  assert 'model.num_codes: checkpoint 16, config 32' in message
  assert workdir in message


def test_non_finite_loss_names_step_and_term_and_keeps_last_checkpoint(
    tmp_path, monkeypatch):
  workdir = str(tmp_path)
  # A trace of every step: still running when the loss breaks.
  config = tiny_config(num_train_steps=6, checkpoint_every_steps=1,
                       log_every_steps=1, learning_rate=1e35,
                       profile_steps=(1, 6))
  handler = signal.getsignal(signal.SIGTERM)
  opened, closed = [], []

  class Recorded(metric_writers.MetricWriter):

    def __init__(self, *args, **kwargs):
      opened.append(self)
      super().__init__(*args, **kwargs)

    def close(self):
      closed.append(self)
      super().close()
  monkeypatch.setattr(metric_writers, 'MetricWriter', Recorded)
  with pytest.raises(train.NonFiniteLossError) as info:
    train.train_and_evaluate(config, workdir)
  # The loop's resources are closed on the error's path too: the SIGTERM
  # handler is the one before, the trace was stopped and written (another
  # can start), every metric writer was closed.
  assert signal.getsignal(signal.SIGTERM) is handler
  assert glob.glob(os.path.join(workdir, 'profile', '**', '*.xplane.pb'),
                   recursive=True)
  jax.profiler.start_trace(str(tmp_path / 'again'))
  jax.profiler.stop_trace()
  assert opened and closed == opened
  message = str(info.value)
  assert 'at step' in message and 'Loss term' in message
  bad_step = int(message.split('at step ')[1].split('.')[0])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir,
                                                         'checkpoints')))
  assert steps and max(steps) == bad_step - 1
  assert f'last good checkpoint is step {bad_step - 1}' in message


def _main(*args, env=None):
  return subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main', *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=subprocess_env(**(env or {})))


def test_cli_rejects_unknown_config_fields_without_traceback(tmp_path):
  proc = _main('--config=configs/default.py', f'--workdir={tmp_path}',
               '--config.model.num_codez=3')
  assert proc.returncode != 0
  assert 'num_codez' in proc.stderr
  bad = _main('--config=configs/default.py', f'--workdir={tmp_path}',
              '--config.data.source=nowhere')
  assert bad.returncode == 1
  assert "Unknown data.source 'nowhere'" in bad.stderr
  assert 'Traceback' not in bad.stderr


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  args = [sys.executable, '-m', 'cvqvae_jax.main',
          '--config=configs/default.py', f'--workdir={tmp_path}',
          '--config.num_train_steps=100000',
          '--config.checkpoint_every_steps=100000', *TINY_FLAGS]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env=subprocess_env())
  metrics = tmp_path / 'metrics.jsonl'
  deadline = time.time() + 240
  while time.time() < deadline and not (metrics.exists() and
                                        metrics.stat().st_size):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-2000:]
  # One checkpoint, at the step it stopped after (not a scheduled one).
  saved_steps = os.listdir(tmp_path / 'checkpoints')
  assert len(saved_steps) == 1
  saved = int(saved_steps[0])
  assert [r['step'] for r in _records(str(tmp_path))
          if 'loss' in r] == list(range(1, saved + 1))
  done = _main('--config=configs/default.py', f'--workdir={tmp_path}',
               f'--config.num_train_steps={saved + 2}', *TINY_FLAGS)
  assert done.returncode == 0, done.stderr[-2000:]
  steps = [r['step'] for r in _records(str(tmp_path)) if 'loss' in r]
  assert steps == list(range(1, saved + 3))


WALL_LINE = re.compile(
    r'^Wall time (\d+) s: training steps (\d+) s, compilation and '
    r'initialisation (\d+) s, held-out evaluation (\d+) s, other \(data, '
    r'checkpoints, previews\) (\d+) s\.$', re.M)


def test_wall_time_line_splits_the_run_and_evaluation_compiles_once(
    tmp_path, capsys):
  """The summary's wall-time parts are non-negative and add up to the
  total; each evaluation step compiles once per shape in a process: the
  curves and the final evaluation share the compilations, and a later
  evaluation with a newly built (equal) model compiles nothing."""
  config = _one_stage(num_train_steps=3, eval_every_steps=2,
                      log_every_steps=1, checkpoint_every_steps=3)
  # As in a new process (other tests compiled this model's programs).
  evaluation.forget_compiled()
  with profiling.Compilations() as compiled:
    results = cli.train(config, str(tmp_path))
  line = WALL_LINE.search(capsys.readouterr().out)
  assert line, 'no wall-time line'
  total, *parts = (int(v) for v in line.groups())
  assert total > 0 and all(p >= 0 for p in parts)
  assert abs(sum(parts) - total) <= len(parts)  # Each part rounded.
  seconds = profiling.WALL.seconds
  assert all(s >= 0 for s in seconds.values()), seconds
  assert sum(seconds.values()) <= time.perf_counter() - profiling.WALL.start
  assert seconds[train.EVAL] > 0 and seconds[train.COMPILE] > 0
  # One compilation per jitted function, though the curve at step 2 and
  # the final evaluation both ran. An evaluation encodes in its one pass
  # (evaluation_pass: no eval_step, posterior_reconstructions or encode of
  # its own), and the swaps decode those codes (no program of their own,
  # none per label); encode compiles twice for the preview: with the true
  # labels (its swaps), and without (its reconstructions).
  for name in ('jit(create_train_state)', 'jit(train_step)',
               'jit(evaluation_pass)', 'jit(decode_errors)',
               'jit(decode)'):
    assert compiled.counts[name] == 1, compiled.table()
  assert compiled.counts['jit(encode)'] == 2, compiled.table()
  for name in ('jit(swap)', 'jit(eval_step)',
               'jit(posterior_reconstructions)'):
    assert name not in compiled.counts, compiled.table()
  assert max(compiled.counts.values()) <= 2, compiled.table()
  # As --mode=evaluate or a script would: a new build, the same shapes.
  setup = train.build(config)
  _, params = _params(str(tmp_path), config)
  with profiling.Compilations() as again:
    second = evaluation.evaluate(params, setup.model, config)
  assert again.total == 0, again.table()
  assert second == results
