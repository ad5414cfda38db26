"""One writer per workdir: training holds WORKDIR/.lock for its lifetime.

The lock is an fcntl.flock on an open file descriptor: the kernel releases
it when the process ends, however it ends (exit, exception, SIGKILL, a
crash), so a stale lock on the same host needs no clean-up. The file also
holds its holder's host, pid, start time and command, so that a second job
on the same workdir stops with a message naming the first.

On a network file system whose locks do not reach across hosts, flock
succeeds on a second host while the first still runs. The file's content
tells: when the lock is free but the file names a job on another host that
never released it (a clean release empties the file), the run stops and
says so, instead of writing beside it.

--mode=evaluate and --mode=figures only read, and take no lock.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any

from absl import logging

LOCK_NAME = '.lock'


class WorkdirLockedError(RuntimeError):
  """Another job writes this workdir."""


def lock_path(workdir: str, process_index: int = 0) -> str:
  name = LOCK_NAME if process_index == 0 else (
      f'{LOCK_NAME}.process_{process_index}')
  return os.path.join(os.path.abspath(workdir), name)


def _holder(info: dict[str, Any]) -> str:
  return (f'host {info.get("host")!r}, pid {info.get("pid")}, since '
          f'{info.get("since")} (command: {info.get("command")})')


def _read(fd: int) -> dict[str, Any] | None:
  os.lseek(fd, 0, os.SEEK_SET)
  raw = b''
  while chunk := os.read(fd, 65536):
    raw += chunk
  if not raw.strip():
    return None
  try:
    info = json.loads(raw)
  except ValueError:
    return None
  return info if isinstance(info, dict) else None


class WorkdirLock:
  """Context manager: acquires on enter, releases on exit.

  Raises WorkdirLockedError naming the holder when another live job holds
  the workdir (or, on a file system without cross-host locks, may hold it).
  """

  def __init__(self, workdir: str, process_index: int = 0):
    # An object-store workdir (gs://...) has no file lock: not checked.
    self.remote = '://' in str(workdir)
    self.path = (f'{workdir}/{LOCK_NAME}' if self.remote
                 else lock_path(workdir, process_index))
    self._fd: int | None = None

  def acquire(self) -> None:
    if self.remote:
      logging.warning('%s is not on a local or network file system: no lock '
                      'keeps a second job from writing it.', self.path)
      return
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      info = _read(fd) or {}
      os.close(fd)
      raise WorkdirLockedError(
          f'{os.path.dirname(self.path)} is in use by another training '
          f'job: {_holder(info)}. Two jobs must not write one workdir; wait '
          'for it to end (or stop it), or use another --workdir.') from None
    previous = _read(fd)
    here = socket.gethostname()
    if previous and previous.get('host') != here:
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      raise WorkdirLockedError(
          f'{self.path} names a training job on another host: '
          f'{_holder(previous)}, and was never released. This file system '
          'does not share locks between hosts, so that job may still be '
          f'writing. If it has ended, delete {self.path} and run again.')
    if previous:
      logging.info('Took over %s from a job that ended without releasing '
                   'it: %s.', self.path, _holder(previous))
    info = {'host': here, 'pid': os.getpid(),
            'since': datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            'command': ' '.join(sys.argv)}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    os.ftruncate(self._fd, 0)  # Empty: released cleanly.
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
