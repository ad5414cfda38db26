"""Several processes (docs/cluster.md): two local CPU processes joined by
jax.distributed (gloo collectives) train, save, resume and get the losses of
one process with the same global batch; what must not run on several
processes is refused; config.profile_steps writes a trace."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FAST_COMPILE_FLAG, ROOT, subprocess_env, tiny_config
from cvqvae_jax import checkpointing
from cvqvae_jax import classifier
from cvqvae_jax import cli
from cvqvae_jax import profiling
from cvqvae_jax import train
from cvqvae_jax.data import pipeline

CONFIG_FILE = '''
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_config

def get_config():
  return tiny_config(**{{'stage_one.model': '', 'log_every_steps': 1,
                        'checkpoint_every_steps': 2}})
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(tmp_path, name, workdir, num_processes, *flags):
  """Starts main in `num_processes` processes. Each child writes to a file
  (orbax's logs would fill an unread pipe and block it)."""
  config = tmp_path / 'tiny.py'
  if not config.exists():
    config.write_text(CONFIG_FILE.format(tests=os.path.join(ROOT, 'tests')))
  args = [sys.executable, '-m', 'cvqvae_jax.main', f'--config={config}',
          f'--workdir={workdir}', *flags]
  env = subprocess_env(JAX_PLATFORMS='cpu', XLA_FLAGS=FAST_COMPILE_FLAG)
  address = f'localhost:{_free_port()}'
  procs = []
  for i in range(num_processes):
    path = tmp_path / f'{name}.{i}.log'
    with open(path, 'w') as out:
      procs.append((subprocess.Popen(
          args + [f'--coordinator_address={address}',
                  f'--num_processes={num_processes}', f'--process_id={i}'],
          cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), path))
  return procs


def _finish(procs, timeout=300):
  """Waits for every process (kills them all after `timeout` s); returns
  their logs, after checking that each exited with 0."""
  deadline = time.time() + timeout
  try:
    for proc, _ in procs:
      proc.wait(timeout=max(1.0, deadline - time.time()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for proc, _ in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  logs = [path.read_text() for _, path in procs]
  for i, ((proc, path), log) in enumerate(zip(procs, logs)):
    assert proc.returncode == 0, f'{path.name} (process {i}):\n{log[-3000:]}'
  return logs


def _wait_for(path, text, procs, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if text in path.read_text():
      return
    if any(proc.poll() is not None for proc, _ in procs):
      _finish(procs)
      raise AssertionError(f'A process ended before {text!r} in {path}.')
    time.sleep(0.2)
  _finish(procs, timeout=0)


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_two_processes_stop_together_resume_and_match_one_process(tmp_path):
  """SIGTERM reaches process 1 only; JAX's preemption sync makes both save
  the same step and stop. The two resume from it, and every step's loss is
  that of one process training straight through with the same global
  batch."""
  workdir, single = str(tmp_path / 'two'), str(tmp_path / 'one')
  procs = _start(tmp_path, 'first', workdir, 2,
                 '--config.num_train_steps=100000')
  # After the distributed setup (the checkpoint manager synchronises every
  # process): JAX's preemption notifier is in place.
  _wait_for(procs[0][1], 'Parameters:', procs)
  procs[1][0].send_signal(signal.SIGTERM)
  first = _finish(procs)
  assert 'JAX process 0 / 2' in first[0]
  assert 'Preempted: saved step' in first[0], first[0][-3000:]
  saved = int(first[0].split('Preempted: saved step ')[1].split()[0])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir,
                                                         'checkpoints')))
  assert steps[-1] == saved
  last = saved + 2
  resumed = _finish(_start(tmp_path, 'resumed', workdir, 2,
                           f'--config.num_train_steps={last}',
                           f'--config.profile_steps={last},{last}'))
  config = tiny_config(**{'stage_one.model': '', 'log_every_steps': 1,
                          'checkpoint_every_steps': 2,
                          'num_train_steps': last})
  train.train_and_evaluate(config, single)

  assert 'Resumed from' in resumed[0]
  assert f'Trained to step {last}' in resumed[0]
  # Process 1: no progress lines, no summary; process 0 wrote the outputs.
  for log in first[1], resumed[1]:
    assert f'step {saved}/' not in log and 'Trained to step' not in log
  assert f'step {last}/{last}' in resumed[0]
  assert os.path.exists(os.path.join(workdir, 'samples.png'))
  traces = glob.glob(os.path.join(workdir, 'profile', '**', '*.xplane.pb'),
                     recursive=True)
  assert len(traces) == 1, traces  # Process 0's trace of the last step.

  two, one = _records(workdir), _records(single)
  losses = lambda rs: {r['step']: r['loss'] for r in rs if 'loss' in r}
  assert sorted(losses(two)) == sorted(losses(one)) == list(
      range(1, last + 1))
  for step in range(1, last + 1):
    np.testing.assert_allclose(losses(two)[step], losses(one)[step],
                               rtol=1e-5, err_msg=f'step {step}')
  # The held-out numbers at the end: each process evaluates its own copy
  # of the parameters on the whole test split; they equal one process's.
  final = lambda rs: [r for r in rs if 'eval_reconstruction_mse' in r][-1]
  assert final(two)['step'] == final(one)['step'] == last
  held_out = sorted(k for k in final(one) if k.startswith('eval_'))
  assert held_out == sorted(k for k in final(two) if k.startswith('eval_'))
  assert len(held_out) > 10
  for key in held_out:
    np.testing.assert_allclose(final(two)[key], final(one)[key], rtol=1e-4,
                               atol=1e-5, err_msg=key)


def test_process_parts_of_a_batch_make_the_one_process_batch(monkeypatch):
  config = tiny_config()
  whole = next(iter(pipeline.create_train_dataset(config)))
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  parts = []
  for index in range(2):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    parts.append(next(iter(pipeline.create_train_dataset(config))))
  for key in whole:
    np.testing.assert_array_equal(
        np.concatenate([p[key] for p in parts]), whole[key], err_msg=key)


def test_offline_modes_refuse_several_processes(monkeypatch, tmp_path):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  for mode in ('evaluate', 'figures'):
    with pytest.raises(ValueError, match=f'--mode={mode} runs in one '
                       'process.*without --distributed'):
      cli.run_offline(mode, tiny_config(), str(tmp_path))
  with pytest.raises(ValueError, match='classifiers are trained and cached '
                     'by one process'):
    classifier.load_or_train(tiny_config(), str(tmp_path))


def test_sigterm_handler_only_for_one_process(monkeypatch, tmp_path):
  manager = checkpointing.create_manager(str(tmp_path), 1)
  before = signal.getsignal(signal.SIGTERM)
  guard = checkpointing.PreemptionGuard(manager)
  assert signal.getsignal(signal.SIGTERM) != before
  guard.close()
  assert signal.getsignal(signal.SIGTERM) == before
  # Several processes: JAX's preemption notifier keeps SIGTERM.
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  guard = checkpointing.PreemptionGuard(manager)
  assert signal.getsignal(signal.SIGTERM) == before
  guard.close()
  manager.close()


def test_profile_steps_writes_a_trace_of_those_steps(tmp_path):
  trace = profiling.StepTrace(str(tmp_path), (2, 3))
  f = jax.jit(lambda x: jnp.sin(x) * 2)
  x = jnp.ones((8,))
  for step in range(1, 5):
    trace.before(step)
    x = f(x)
    trace.after(step, x)
    if step == 1:
      assert not os.path.exists(profiling.profile_dir(str(tmp_path)))
  trace.close()
  assert glob.glob(os.path.join(str(tmp_path), 'profile', '**',
                                '*.xplane.pb'), recursive=True)
  off = profiling.StepTrace(str(tmp_path / 'off'), (0, 0))
  off.before(1)
  off.after(1, x)
  assert not os.path.exists(tmp_path / 'off')


@pytest.mark.parametrize('steps', [(3, 2), (0, 4), (5,), 'x'])
def test_profile_steps_must_be_an_ordered_pair(steps):
  with pytest.raises(ValueError, match='config.profile_steps'):
    profiling.parse_steps(steps)


def test_distributed_outside_a_cluster_is_a_one_line_error(tmp_path):
  env = {k: v for k, v in subprocess_env(JAX_PLATFORMS='cpu').items()
         if not k.startswith(('SLURM_', 'OMPI_', 'JAX_COORDINATOR'))}
  proc = subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main', '--config=configs/default.py',
       f'--workdir={tmp_path}', '--distributed'], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert 'error: --distributed: coordinator_address' in proc.stderr
  assert 'Traceback' not in proc.stderr
