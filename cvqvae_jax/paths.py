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
