"""Faults a cluster job meets (docs/reliability.md): a damaged latest
checkpoint, a SIGKILL during a save, two jobs on one workdir, and the
resident memory of a long run."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cvqvae_jax import checkpointing
from cvqvae_jax import metric_writers
from cvqvae_jax import train
from cvqvae_jax import two_step
from cvqvae_jax import workdir_lock

from conftest import ROOT, subprocess_env, tiny_config
from test_train import TINY_FLAGS


@pytest.fixture(autouse=True)
def _no_final_evaluation(monkeypatch):
  """The held-out evaluation and the preview at the end of a run are not
  what these tests check (test_train does): skipped to keep them fast."""
  monkeypatch.setattr(train.evaluation, 'evaluate',
                      lambda *args, **kwargs: {})
  monkeypatch.setattr(train.previews, 'write_preview',
                      lambda workdir, *args: os.path.join(workdir, 'x.png'))


def _one_stage(**overrides):
  return tiny_config(**{'stage_one.model': '', **overrides})


def _state(workdir, config, step):
  """The full train state (params and Adam moments) saved at `step`."""
  manager = checkpointing.create_manager(workdir, 10)
  _, _, _, abstract, _, shape = train._build(config)  # pylint: disable=protected-access
  state = checkpointing.restore(manager, abstract, None,
                                train.model_description(config, shape),
                                step=step)
  manager.close()
  return state


def _assert_bitwise_equal(a, b):
  leaves_a = jax.tree_util.tree_flatten_with_path(a)[0]
  leaves_b = jax.tree_util.tree_flatten_with_path(b)[0]
  assert len(leaves_a) == len(leaves_b) > 100
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))


def _damage(step_dir):
  """What a job that died mid-write or a flipped disk block leaves: the
  sharding record and the array files of the train state overwritten."""
  files = [os.path.join(step_dir, 'state', '_sharding')] + glob.glob(
      os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd', '*'))
  for path in files:
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
      f.write((b'\x00damaged' * (size // 8 + 1))[:size])
  return files


def _train_steps(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l)['step'] for l in f if 'loss' in json.loads(l)]


@pytest.fixture(scope='module')
def four_steps(tmp_path_factory):
  """A one-stage run to step 4, checkpoints at 2 and 4."""
  workdir = str(tmp_path_factory.mktemp('four'))
  train.train_and_evaluate(_one_stage(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  return workdir


def _copy(source, target, drop=()):
  shutil.copytree(source, target)
  for step in drop:
    shutil.rmtree(os.path.join(target, 'checkpoints', str(step)))
  return str(target)


def test_damaged_latest_checkpoint_resumes_from_the_one_before(
    four_steps, tmp_path, caplog):
  damaged = _copy(four_steps, tmp_path / 'damaged')
  # The reference: never damaged, resumed from step 2.
  clean = _copy(four_steps, tmp_path / 'clean', drop=(4,))
  _damage(os.path.join(damaged, 'checkpoints', '4'))
  config = _one_stage(num_train_steps=6)
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, damaged)
  skipped = [r.getMessage() for r in caplog.records
             if 'cannot be read' in r.getMessage()]
  assert len(skipped) == 1, skipped
  assert skipped[0].startswith('Checkpoint step 4 cannot be read')
  assert 'resuming from step 2' in skipped[0]
  assert '_sharding' in skipped[0]
  # Kept aside (not deleted), where orbax does not list it.
  aside = glob.glob(os.path.join(damaged, checkpointing.DAMAGED, '4-*'))
  assert len(aside) == 1 and aside[0] in skipped[0]
  assert os.path.exists(os.path.join(aside[0], 'state', '_sharding'))
  assert sorted(os.listdir(os.path.join(damaged, 'checkpoints'))) == ['4', '6']
  assert _train_steps(damaged) == [2, 4, 6]  # Replayed steps logged once.

  train.train_and_evaluate(config, clean)
  _assert_bitwise_equal(_state(damaged, config, 6), _state(clean, config, 6))


def test_no_readable_checkpoint_stops_naming_every_path(four_steps,
                                                        tmp_path):
  workdir = _copy(four_steps, tmp_path / 'all_damaged')
  for step in (2, 4):
    _damage(os.path.join(workdir, 'checkpoints', str(step)))
  with pytest.raises(checkpointing.NoReadableCheckpointError) as info:
    train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  message = str(info.value)
  assert '\n' not in message
  for step in (2, 4):
    assert f'{workdir}/checkpoints/{step} (' in message
  # Nothing moved: the user decides.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  assert not os.path.exists(os.path.join(workdir, checkpointing.DAMAGED))
  _, _, _, abstract, _, _ = train._build(_one_stage())  # pylint: disable=protected-access
  with pytest.raises(checkpointing.NoReadableCheckpointError):
    checkpointing.restore_params(workdir, abstract.params)


def test_readers_skip_a_damaged_latest_without_moving_it(four_steps,
                                                         tmp_path, caplog):
  """--mode=evaluate|figures (restore_params) and a stage two reading this
  workdir as its stage one (initialise_from): they read the step before,
  and leave the workdir as it is."""
  workdir = _copy(four_steps, tmp_path / 'read_only')
  _damage(os.path.join(workdir, 'checkpoints', '4'))
  config = _one_stage()
  _, _, _, abstract, _, shape = train._build(config)  # pylint: disable=protected-access
  with caplog.at_level('WARNING'):
    flat, source = checkpointing.restore_params(
        workdir, abstract.params,
        description=train.model_description(config, shape))
  assert source['step'] == 2
  assert any(f'Skipping checkpoint {workdir}/checkpoints/4' in r.getMessage()
             for r in caplog.records)
  expected = checkpointing.flatten(_state(four_steps, config, 2).params)
  assert sorted(flat) == sorted(expected)
  for path, value in flat.items():
    np.testing.assert_array_equal(np.asarray(value), expected[path])
  params = two_step.initialise_from(workdir, jax.tree.map(np.zeros_like,
                                                          abstract.params),
                                    abstract.params)
  restored = checkpointing.flatten(params)
  for path in expected:
    if two_step.is_transferred(path):
      np.testing.assert_array_equal(np.asarray(restored[path]),
                                    expected[path])
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']


def test_damaged_stage_two_checkpoint_restarts_stage_two_from_stage_one(
    tmp_path):
  """E: stage one (D) steps 1-2, stage two 3-4. With step 4 damaged, the
  run goes back to stage one's last checkpoint and starts stage two from
  it again, bitwise as a run that never had step 4."""
  config = tiny_config(**{'stage_one.share': 0.5, 'freeze_steps': 1})
  first = str(tmp_path / 'first')
  train.train_and_evaluate(config, first)
  assert sorted(os.listdir(os.path.join(first, 'checkpoints'))) == ['2', '4']
  clean = _copy(first, tmp_path / 'clean', drop=(4,))
  _damage(os.path.join(first, 'checkpoints', '4'))
  train.train_and_evaluate(config, first)
  train.train_and_evaluate(config, clean)
  with open(os.path.join(first, two_step.INIT_RECORD)) as f:
    assert json.load(f)['checkpoint'].endswith('checkpoints/2')
  _assert_bitwise_equal(_state(first, config, 4), _state(clean, config, 4))
