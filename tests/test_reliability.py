"""Faults a cluster job meets (docs/reliability.md): a damaged latest
checkpoint, a SIGKILL during a save, two jobs on one workdir."""

import glob
import json
import logging as std_logging
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
from cvqvae_jax import cli
from cvqvae_jax import models
from cvqvae_jax import train
from cvqvae_jax import two_step
from cvqvae_jax import workdir_lock

from conftest import ROOT, TINY_FLAGS, subprocess_env, tiny_config


def _skip_final_evaluation(monkeypatch):
  """The held-out evaluation and the preview at the end of a run are not
  what these tests check (test_train does): skipped to keep them fast."""
  monkeypatch.setattr(train.evaluation, 'evaluate',
                      lambda *args, **kwargs: {})
  monkeypatch.setattr(train.previews, 'write_preview',
                      lambda workdir, *args: os.path.join(workdir, 'x.png'))


def _train_skipping_final_evaluation(config, workdir):
  """train_and_evaluate with _skip_final_evaluation, for module fixtures
  (which cannot take the function-scoped monkeypatch)."""
  with pytest.MonkeyPatch.context() as patch:
    _skip_final_evaluation(patch)
    train.train_and_evaluate(config, workdir)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
  _skip_final_evaluation(monkeypatch)


def _one_stage(**overrides):
  return tiny_config(**{'stage_one.model': '', **overrides})


def _state(workdir, config, step):
  """The full train state (params and Adam moments) saved at `step`."""
  manager = checkpointing.create_manager(workdir, 10)
  setup = train.build(config)
  abstract, shape = setup.abstract_state, setup.image_shape
  state = checkpointing.restore(manager, abstract, None,
                                models.description(config, shape),
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


def _records_up_to(workdir, step):
  """The metrics.jsonl lines of steps <= `step`, as written (with their
  steps_per_second: a step trained again writes another)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [l for l in f if json.loads(l)['step'] <= step]


def _warnings(caplog):
  """The messages of this package's WARNING records."""
  return [r.getMessage() for r in caplog.records
          if r.levelno == std_logging.WARNING
          and f'{os.sep}cvqvae_jax{os.sep}' in r.pathname]


@pytest.fixture(scope='module')
def four_steps(tmp_path_factory):
  """A one-stage run to step 4, checkpoints at 2 and 4."""
  workdir = str(tmp_path_factory.mktemp('four'))
  _train_skipping_final_evaluation(_one_stage(), workdir)
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
  # Kept aside (not deleted), where orbax does not list it; one warning
  # names where it went and the file that could not be read.
  aside = glob.glob(os.path.join(damaged, checkpointing.DAMAGED, '4-*'))
  warned = _warnings(caplog)
  assert len(aside) == 1 and len(warned) == 1, warned
  assert aside[0] in warned[0] and '_sharding' in warned[0]
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
  abstract = train.build(_one_stage()).abstract_state
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
  setup = train.build(config)
  abstract, shape = setup.abstract_state, setup.image_shape
  with caplog.at_level('WARNING'):
    flat, source = checkpointing.restore_params(
        workdir, abstract.params,
        description=models.description(config, shape))
  assert source['step'] == 2
  assert [w for w in _warnings(caplog) if f'{workdir}/checkpoints/4' in w]
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


# A child `python -m cvqvae_jax.main` whose save of one step stops at a
# chosen point (and signals it) until it is killed there.
_SLOW_SAVE = r'''
import os, sys, time
from orbax.checkpoint._src.path import async_path
import orbax.checkpoint as ocp
step, point, mark = sys.argv[1:4]
sys.argv = [sys.argv[0], *sys.argv[4:]]

def hold(what):
  with open(mark, 'w') as f:
    f.write(what)
  time.sleep(600)

if point == 'rename':  # Every file written, the commit not yet made.
  rename = async_path.rename
  async def slow_rename(src, dst):
    if dst.name == step:
      hold(str(src))
    return await rename(src, dst)
  async_path.rename = slow_rename
elif point == 'write':  # Some items written, others not yet.
  save = ocp.JsonCheckpointHandler.async_save
  async def slow_save(self, directory, *args, **kwargs):
    if f'/{step}.orbax-checkpoint-tmp' in str(directory):
      hold(str(directory))
    return await save(self, directory, *args, **kwargs)
  ocp.JsonCheckpointHandler.async_save = slow_save

# As _skip_final_evaluation: the held-out evaluation is not checked here.
from cvqvae_jax import train
train.evaluation.evaluate = lambda *args, **kwargs: {}
train.previews.write_preview = lambda workdir, *args: workdir + '/x.png'
from absl import app
from cvqvae_jax import main
app.run(main.main)
'''

KILL_FLAGS = (*TINY_FLAGS, '--config.stage_one.model=',
              '--config.num_train_steps=6', '--config.checkpoint_every_steps=2',
              '--config.eval_every_steps=0')


@pytest.mark.parametrize('point', ['write', 'rename'])
def test_sigkill_during_a_save_resumes_from_the_last_complete_one(
    point, tmp_path, straight_six):
  workdir = tmp_path / 'run'
  script = tmp_path / 'slow_save.py'
  script.write_text(_SLOW_SAVE)
  mark = tmp_path / 'mark'
  log = open(tmp_path / 'child.log', 'w')  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      [sys.executable, str(script), '4', point, str(mark),
       '--config=configs/default.py', f'--workdir={workdir}', *KILL_FLAGS],
      cwd=ROOT, stdout=log, stderr=log, env=subprocess_env())
  deadline = time.time() + 300
  while time.time() < deadline and not mark.exists() and proc.poll() is None:
    time.sleep(0.1)
  assert mark.exists(), (tmp_path / 'child.log').read_text()[-3000:]
  time.sleep(0.2)  # The mark is written: the child now sleeps in the save.
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  log.close()
  names = os.listdir(workdir / 'checkpoints')
  # The interrupted save is a temporary folder that resume never lists.
  assert any(n.startswith('4.orbax-checkpoint-tmp') for n in names), names
  assert checkpointing.create_manager(str(workdir), 2).all_steps() == [2]
  up_to_2 = _records_up_to(str(workdir), 2)

  done = subprocess.run(
      [sys.executable, str(script), '0', 'none', str(mark),
       '--config=configs/default.py', f'--workdir={workdir}', *KILL_FLAGS],
      cwd=ROOT, env=subprocess_env(),
      capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  # Resumed from step 2: steps 1-2 are not trained again.
  assert _records_up_to(str(workdir), 2) == up_to_2
  # The temporary folder is gone, the steps are complete.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4', '6']
  assert _train_steps(str(workdir)) == list(range(1, 7))

  _assert_bitwise_equal(_state(str(workdir), _kill_config(), 6),
                        _state(straight_six, _kill_config(), 6))


@pytest.fixture(scope='module')
def straight_six(tmp_path_factory):
  """The uninterrupted run the killed ones are compared with."""
  workdir = str(tmp_path_factory.mktemp('straight'))
  _train_skipping_final_evaluation(_kill_config(), workdir)
  return workdir


def _kill_config():
  """tiny_config with what KILL_FLAGS set (TINY_FLAGS and tiny_config agree
  on everything that shapes the parameters)."""
  return _one_stage(num_train_steps=6, log_every_steps=1, eval_every_steps=0)


_HOLD_LOCK = r'''
import sys, time
from cvqvae_jax import workdir_lock
lock = workdir_lock.WorkdirLock(sys.argv[1])
lock.acquire()
open(sys.argv[2], 'w').write('held')
time.sleep(600)
'''


def test_a_second_job_on_one_workdir_stops_naming_the_first(tmp_path):
  workdir = tmp_path / 'shared'
  workdir.mkdir()
  mark = tmp_path / 'held'
  first = subprocess.Popen(
      [sys.executable, '-c', _HOLD_LOCK, str(workdir), str(mark)], cwd=ROOT,
      env=subprocess_env(), stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and not mark.exists():
      time.sleep(0.1)
    with pytest.raises(workdir_lock.WorkdirLockedError) as info:
      train.train_and_evaluate(_one_stage(), str(workdir))
    message = str(info.value)
    assert f'pid {first.pid}' in message
    assert repr(socket.gethostname()) in message and 'since 20' in message
    assert '\n' not in message
    assert not os.path.exists(workdir / 'checkpoints')  # Nothing written.
    # The command line: one line, no traceback.
    second = subprocess.run(
        [sys.executable, '-m', 'cvqvae_jax.main',
         '--config=configs/default.py', f'--workdir={workdir}',
         *KILL_FLAGS], cwd=ROOT, env=subprocess_env(), capture_output=True,
        text=True, timeout=300, check=False)
    assert second.returncode == 1
    assert 'in use by another training job: host' in second.stderr
    assert f'pid {first.pid}' in second.stderr
    assert 'Traceback' not in second.stderr
    # Evaluation only reads: no lock (here: no checkpoint yet).
    with pytest.raises(FileNotFoundError, match='train first'):
      cli.run_offline('evaluate', _one_stage(), str(workdir))
  finally:
    first.send_signal(signal.SIGKILL)  # A crash: the kernel drops the lock.
    first.wait(timeout=60)
  with workdir_lock.WorkdirLock(str(workdir)) as lock:
    assert json.load(open(lock.path))['pid'] == os.getpid()
  assert open(lock.path).read() == ''  # Released cleanly.


def test_a_lock_left_by_another_host_is_reported(tmp_path):
  """On a file system whose locks do not reach across hosts, the file's
  content is all there is to go by."""
  path = workdir_lock.lock_path(str(tmp_path))
  with open(path, 'w') as f:
    json.dump({'host': 'node-17', 'pid': 4242, 'since': '2026-11-28T20:00:00',
               'command': 'main.py'}, f)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match="another host: host 'node-17', pid 4242"):
    workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  # The same host: a crashed job's stale record is taken over.
  with open(path, 'w') as f:
    json.dump({'host': socket.gethostname(), 'pid': 4242}, f)
  with workdir_lock.WorkdirLock(str(tmp_path)):
    pass


def test_an_object_store_workdir_takes_no_lock():
  with workdir_lock.WorkdirLock('gs://bucket/run') as lock:
    assert lock.remote and lock.path == 'gs://bucket/run/.lock'
  assert checkpointing.set_aside_damaged('gs://bucket/run') is None


def _no_space_message(step, workdir, intact):
  return (rf'^no space left for step {step} in {workdir}/checkpoints: needs '
          rf'about [0-9.]+ MB, 0\.0 MB free; {intact}\. ')


def test_a_full_disk_stops_before_training_steps_it_cannot_save(
    four_steps, tmp_path, monkeypatch):
  workdir = _copy(four_steps, tmp_path / 'full')
  free = shutil.disk_usage(workdir)
  monkeypatch.setattr(
      checkpointing.shutil, 'disk_usage',
      lambda path: type(free)(free.total, free.total - 1000, 1000))
  with pytest.raises(checkpointing.CheckpointSaveError,
                     match=_no_space_message(6, workdir,
                                             'steps 2 and 4 are intact')
                     + 'Stopped before training') as raised:
    train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  assert '\n' not in str(raised.value)
  assert _train_steps(workdir) == [2, 4]  # Steps 5 and 6 never trained.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']


def test_a_save_that_fails_is_one_line_and_the_steps_before_stay(
    four_steps, tmp_path, monkeypatch):
  workdir = _copy(four_steps, tmp_path / 'enospc')
  directory = os.path.join(workdir, 'checkpoints')
  real_save = checkpointing.ocp.CheckpointManager.save

  def no_space(self, step, *args, **kwargs):
    partial = os.path.join(directory, f'{step}.orbax-checkpoint-tmp-1234')
    os.makedirs(os.path.join(partial, 'state'))
    with open(os.path.join(partial, 'state', 'part'), 'wb') as f:
      f.write(b'x' * 1000)
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(checkpointing.ocp.CheckpointManager, 'save', no_space)
  with pytest.raises(checkpointing.CheckpointSaveError) as raised:
    train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  message = str(raised.value)
  assert message.startswith(f'no space left for step 6 in {directory}: steps '
                            '2 and 4 are intact. free space in'), message
  assert '\n' not in message and len(message) < 400
  assert sorted(os.listdir(directory)) == ['2', '4']  # The partial one gone.
  monkeypatch.setattr(checkpointing.ocp.CheckpointManager, 'save', real_save)
  train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  assert sorted(os.listdir(directory)) == ['4', '6']


def test_a_full_disk_when_writing_metrics_is_one_line(four_steps, tmp_path,
                                                      monkeypatch):
  """ENOSPC outside a save (metrics.jsonl here): one line naming the
  checkpoint folder and the steps intact, after the save in flight."""
  workdir = _copy(four_steps, tmp_path / 'metrics_full')
  real_write = train.metric_writers.MetricWriter.write

  def write(self, step, metrics):
    if step == 6:
      raise OSError(28, 'No space left on device')
    real_write(self, step, metrics)

  monkeypatch.setattr(train.metric_writers.MetricWriter, 'write', write)
  with pytest.raises(checkpointing.CheckpointSaveError) as raised:
    train.train_and_evaluate(_one_stage(num_train_steps=8), workdir)
  message = str(raised.value)
  directory = os.path.join(workdir, 'checkpoints')
  assert message.startswith(
      f'no space left on the device of {directory} (writing the run\'s '
      'outputs): steps 2 and 4 are intact. free space in'), message
  assert '\n' not in message


def _mount_tmpfs(path, size):
  os.makedirs(path)
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                         'tmpfs', str(path)], capture_output=True, check=False)
  return done.returncode == 0


def test_a_real_full_file_system_during_a_save(tmp_path):
  """ENOSPC from TensorStore itself, on a tmpfs with room for two
  checkpoints of the tiny model and not three (needs root to mount)."""
  mount = tmp_path / 'small'
  if os.geteuid() != 0 or not _mount_tmpfs(mount, '2200k'):
    pytest.skip('mounting a tmpfs needs root')
  try:
    workdir = str(mount / 'run')
    # The check before each save lets the save of step 6 start: it fails
    # inside orbax's background thread.
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(checkpointing, 'check_space', lambda *a, **k: None)
      with pytest.raises(checkpointing.CheckpointSaveError) as raised:
        train.train_and_evaluate(
            _one_stage(num_train_steps=8, max_checkpoints_to_keep=5),
            workdir)
    directory = os.path.join(workdir, 'checkpoints')
    assert str(raised.value).startswith(
        f'no space left for step 6 in {directory}: steps 2 and 4 are '
        'intact.'), str(raised.value)
    assert sorted(os.listdir(directory)) == ['2', '4']
    # With the check: the next start stops before training step 5.
    with pytest.raises(checkpointing.CheckpointSaveError,
                       match='Stopped before training'):
      train.train_and_evaluate(
          _one_stage(num_train_steps=8, max_checkpoints_to_keep=5), workdir)
    assert _train_steps(workdir) == [2, 4]  # Nothing trained after step 4.
  finally:
    subprocess.run(['umount', '-l', str(mount)], check=False)


def test_asyncio_echoes_of_a_failed_save_are_dropped(tmp_path, caplog):
  """The records asyncio logs after a save failed in TensorStore's event
  loop repeat the one-line error: dropped; others from asyncio stay."""
  checkpointing.create_manager(str(tmp_path), 1).close()
  logger = std_logging.getLogger('asyncio')
  with caplog.at_level(std_logging.DEBUG, logger='asyncio'):
    logger.error('Task exception was never retrieved\nfuture: <Task ...>')
    logger.error('Exception in callback _chain_future.<locals>.'
                 '_call_set_state(<Future ...>)')
    logger.error('%s', RuntimeError('Event loop is closed'))
    logger.warning('Executing <Task ...> took 0.2 seconds')
  assert [r.getMessage() for r in caplog.records] == [
      'Executing <Task ...> took 0.2 seconds']


FILL_DURING_A_SAVE = (
    'import sys\n'
    'from absl import app\n'
    'from cvqvae_jax import checkpointing, main\n'
    # The check before each save lets the save start: the disk fills in it.
    'checkpointing.check_space = lambda *a, **k: None\n'
    'app.run(main.main, flags_parser=main._parse_flags)\n')


def test_a_disk_that_fills_during_a_save_is_one_line_on_the_console(
    tmp_path):
  """The console of a command-line run whose disk fills while a save
  writes (and the metrics after it): the one error line and nothing else
  but the progress lines; no half-written folder is left."""
  mount = tmp_path / 'small'
  if os.geteuid() != 0 or not _mount_tmpfs(mount, '2200k'):
    pytest.skip('mounting a tmpfs needs root')
  try:
    workdir = str(mount / 'run')
    proc = subprocess.run(
        [sys.executable, '-c', FILL_DURING_A_SAVE,
         '--config=configs/default.py', f'--workdir={workdir}',
         '--config.stage_one.model=', '--config.num_train_steps=8',
         '--config.checkpoint_every_steps=2',
         '--config.max_checkpoints_to_keep=5', *TINY_FLAGS],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=subprocess_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [l for l in (proc.stdout + proc.stderr).splitlines()
             if not l.startswith('I')]  # absl's INFO lines: the progress.
    assert len(lines) == 1, '\n'.join(lines[:40])
    assert lines[0].startswith('error: no space left for step '), lines[0]
    directory = os.path.join(workdir, 'checkpoints')
    assert not [n for n in os.listdir(directory)
                if checkpointing.TMP_MARK in n]
  finally:
    subprocess.run(['umount', '-l', str(mount)], check=False)


def _flip_one_bit(step_dir):
  """One bit in the middle of the largest array file of the train state:
  the file still decodes, to a changed value."""
  files = glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd',
                                 '*'))
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 0x10]))


def test_a_flipped_bit_in_an_array_is_caught_by_its_checksum(
    four_steps, tmp_path, monkeypatch, caplog):
  workdir = _copy(four_steps, tmp_path / 'flipped')
  directory = os.path.join(workdir, 'checkpoints')
  _flip_one_bit(os.path.join(directory, '4'))
  reader = checkpointing.open_reader(directory)
  with monkeypatch.context() as without_checksums:
    without_checksums.setattr(checkpointing, 'check_digests',
                              lambda *args: None)
    checkpointing.read_fully(reader, 4)  # Decodes: only the checksum sees it.
  with pytest.raises(ValueError, match=r'^1 array\(s\) differ from the '
                     'checksum saved with them'):
    checkpointing.read_fully(reader, 4)
  reader.close()
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(_one_stage(num_train_steps=6), workdir)
  aside = os.listdir(os.path.join(workdir, checkpointing.DAMAGED))
  warned = _warnings(caplog)
  assert len(aside) == 1 and len(warned) == 1, warned
  assert aside[0] in warned[0]
  assert sorted(os.listdir(directory)) == ['4', '6']  # 4 trained again,
  assert _train_steps(workdir) == [2, 4, 6]  # from step 2.


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / 'results.txt'
  path.write_text('not a directory')
  with pytest.raises(ValueError, match=rf'^--workdir {path} is a file, not a '
                     'directory'):
    train.train_and_evaluate(_one_stage(), str(path))
  with pytest.raises(ValueError, match=rf'^--workdir {path}/run lies under '
                     rf'{path}, which is a file'):
    train.train_and_evaluate(_one_stage(), str(path / 'run'))
  done = subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main', '--config=configs/default.py',
       f'--workdir={path}'], cwd=ROOT, env=subprocess_env(),
      capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f'error: --workdir {path} is a file, not a directory: name a directory '
      '(it is created if it does not exist).'), done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  assert path.read_text() == 'not a directory'


def test_a_workdir_that_cannot_be_written_is_one_line(tmp_path):
  parent = tmp_path / 'read_only'
  if os.geteuid() == 0:  # root writes anything: a read-only file system.
    if not _mount_tmpfs(parent, '1m') or subprocess.run(
        ['mount', '-o', 'remount,ro', str(parent)], check=False).returncode:
      pytest.skip('cannot mount a read-only tmpfs')
  else:
    parent.mkdir()
    parent.chmod(0o500)
  try:
    with pytest.raises(ValueError, match=rf'^--workdir {parent}/w'):
      train.train_and_evaluate(_one_stage(), str(parent / 'w'))
  finally:
    if os.geteuid() == 0:
      subprocess.run(['umount', '-l', str(parent)], check=False)
