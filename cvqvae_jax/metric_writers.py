"""Where training metrics go: metrics.jsonl, TensorBoard event files (via
tensorboardX, no TensorFlow at run time) and a progress line in the log."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Mapping

from absl import logging
from etils import epath

from cvqvae_jax import paths


def truncate_jsonl(path, last_step: int) -> int:
  """Drops records with step > last_step (they will be logged again when a
  resumed run replays those steps). Returns how many were dropped."""
  path = epath.Path(path)
  if not path.exists():
    return 0
  lines = [l + '\n' for l in path.read_text().splitlines() if l.strip()]
  keep = [l for l in lines if json.loads(l).get('step', 0) <= last_step]
  if len(keep) != len(lines):
    tmp = path.parent / (path.name + '.tmp')
    tmp.write_text(''.join(keep))
    tmp.replace(path)
  return len(lines) - len(keep)


class MetricWriter:
  """Appends {'step': s, name: value, ...} to metrics.jsonl and TensorBoard.

  Only process 0 writes. `start_step` is the step training resumes from:
  records after it are removed, and TensorBoard purges later events. The
  workdir may be any etils.epath path (local, gs://, ...).
  """

  def __init__(self, workdir: str, start_step: int = 0, enabled: bool = True):
    self._enabled = enabled
    self._path = epath.Path(workdir) / 'metrics.jsonl'
    # Object stores cannot append: there the file is rewritten each time.
    self._append = not paths.is_remote(workdir)
    self._workdir = epath.Path(workdir)
    self._staging = None
    self._tb = None
    if not enabled:
      return
    dropped = truncate_jsonl(self._path, start_step)
    if dropped:
      logging.info('Dropped %d metric records after step %d (replayed on '
                   'resume).', dropped, start_step)
    self._lines = ([] if self._append or not self._path.exists()
                   else [l + '\n' for l in self._path.read_text().splitlines()
                         if l.strip()])
    logdir = str(workdir)
    if not self._append:
      # tensorboardX's own gs:// and s3:// writers need their cloud SDKs:
      # events are written locally and copied to the workdir on close().
      self._staging = tempfile.mkdtemp(prefix='cvqvae_jax_events_')
      logdir = self._staging
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(logdir=logdir, purge_step=start_step + 1
                               if start_step else None)
    except ImportError:
      logging.warning('tensorboardX is not installed (pip install '
                      '"cvqvae_jax[tensorboard]"): no event files.')

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    record = {'step': int(step), **{k: float(v) for k, v in metrics.items()}}
    line = json.dumps(record) + '\n'
    try:
      if self._append:
        with self._path.open('a') as f:
          f.write(line)
      else:
        self._lines.append(line)
        self._path.write_text(''.join(self._lines))
    except OSError:
      self._drop_events()  # A full disk: tensorboardX would retry at exit.
      raise
    if self._tb is not None:
      for name, value in metrics.items():
        self._tb.add_scalar(name, float(value), int(step))

  def write_image(self, step: int, name: str, image) -> None:
    """A uint8 (H, W, 3) image as a TensorBoard image (no-op without
    tensorboardX)."""
    if self._enabled and self._tb is not None:
      self._tb.add_image(name, image, int(step), dataformats='HWC')

  def _drop_events(self) -> None:
    """Closes tensorboardX's writers; when that fails (a full disk), the
    events not yet written are dropped and its threads stopped, so that it
    does not fail again, with tracebacks, when the process exits."""
    tb, self._tb = self._tb, None
    if tb is None:
      return
    try:
      tb.close()
    except OSError:
      for writer in list((getattr(tb, 'all_writers', None) or {}).values()):
        events = getattr(writer, 'event_writer', None)
        try:
          worker = getattr(events, '_worker', None)
          if worker is not None and worker.is_alive():
            worker.stop()
        except Exception:  # pylint: disable=broad-exception-caught
          pass  # Its thread is a daemon: it ends with the process.
        if events is not None:
          events._closed = True  # pylint: disable=protected-access

  def close(self) -> None:
    if self._tb is not None:
      try:
        self._tb.flush()
        self._tb.close()
        self._tb = None
      except OSError:
        self._drop_events()
        raise
    if self._staging is not None:
      for name in os.listdir(self._staging):
        epath.Path(self._staging, name).copy(self._workdir / name,
                                              overwrite=True)


class Progress:
  """steps/s and ETA, measured between calls (compilation excluded)."""

  def __init__(self, total_steps: int):
    self.total = total_steps
    self._t0 = None
    self._step0 = 0

  def start(self, step: int) -> None:
    self._t0, self._step0 = time.perf_counter(), step

  def line(self, step: int) -> tuple[str, float]:
    elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
    rate = (step - self._step0) / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else float('nan')
    pct = 100.0 * step / max(self.total, 1)
    return (f'step {step}/{self.total} ({pct:.0f}%) | {rate:.2f} steps/s | '
            f'ETA {_hms(eta)}'), rate


def _hms(seconds: float) -> str:
  if seconds != seconds:  # NaN
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'
