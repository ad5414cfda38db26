"""XLA's persistent compilation cache, on by default.

A second run of a config (a resume, --mode=evaluate, cvqvae_jax.load, a
test) then reads its compiled programs from disk instead of compiling them
again. The folder: $CVQVAE_JAX_CACHE_DIR, else $XDG_CACHE_HOME/cvqvae_jax/xla
(~/.cache/cvqvae_jax/xla); CVQVAE_JAX_CACHE_DIR=0 (or 'off') turns it off.
A cache folder set for JAX itself (JAX_COMPILATION_CACHE_DIR, or
jax.config's jax_compilation_cache_dir) is left as it is.

Several processes may share the folder: JAX writes each entry to a
temporary file and renames it into place, and a reader sees a whole entry
or none (with several JAX processes only process 0 writes).
"""

from __future__ import annotations

import os

from absl import logging
import jax

CACHE_ENV = 'CVQVAE_JAX_CACHE_DIR'
OFF = ('0', 'off', 'none', 'false')


def default_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'cvqvae_jax', 'xla')


def enable() -> str | None:
  """Points JAX's persistent cache at the folder above (before the first
  compilation); returns it, or None when it is off or JAX's own setting
  is used."""
  value = os.environ.get(CACHE_ENV, '')
  if value.lower() in OFF:
    return None
  if jax.config.jax_compilation_cache_dir or os.environ.get(
      'JAX_COMPILATION_CACHE_DIR'):
    return None
  folder = os.path.abspath(os.path.expanduser(value or default_dir()))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    logging.warning('No compilation cache: %s cannot be created (%s); set '
                    '%s to another folder, or to 0.', folder, e, CACHE_ENV)
    return None
  jax.config.update('jax_compilation_cache_dir', folder)
  logging.info('Compilation cache: %s (%s=0 turns it off).', folder,
               CACHE_ENV)
  return folder
