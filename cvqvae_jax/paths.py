"""Workdir and data paths: local, or any etils.epath store (gs://, s3://,
...), which os.path would turn into a local folder named 'gs:'."""

from __future__ import annotations

import os

from etils import epath

URI_PREFIXES = ('gs://', 's3://', 'az://', 'hf://')


def is_remote(path) -> bool:
  return str(path).startswith(URI_PREFIXES)


def absolute(path) -> str:
  """An absolute local path (~ expanded), or the URI unchanged."""
  path = os.fspath(path) if not isinstance(path, str) else path
  if is_remote(path):
    return path.rstrip('/')
  return os.path.abspath(os.path.expanduser(path))


def join(path, *parts: str) -> str:
  return str(epath.Path(absolute(path)).joinpath(*parts))


def check_writable_workdir(workdir: str) -> None:
  """Raises ValueError (one line) when a local `workdir` is a file, lies
  under a file, or cannot be written; creates it otherwise."""
  if is_remote(workdir):
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    return
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    what = ('is a file' if existing == path
            else f'lies under {existing}, which is a file')
    raise ValueError(f'--workdir {path} {what}, not a directory: name a '
                     'directory (it is created if it does not exist).')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f'--workdir {path}: {existing} is not writable by this '
                     'user; name a directory you can write.')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f'--workdir {path} cannot be created: '
                     f'{e.strerror or e}.') from e
