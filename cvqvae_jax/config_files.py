"""Config files (configs/NAME.py) as modules, loaded by path.

ml_collections' config_flags executes --config=FILE as a module of its own
name, not as part of a package, so a config file cannot import its
neighbours (configs/paper.py, configs/default.py) by name without changing
sys.path. `sibling(__file__, 'paper')` loads the neighbour by path instead,
as config_flags loads the file itself; sys.path and sys.modules are left as
they were.
"""

from __future__ import annotations

import importlib.util
import os
import types


def load(path: str) -> types.ModuleType:
  """The config file at `path`, executed as a fresh module."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'cvqvae_config_{name}', path)
  if spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f'No config file {path}.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(file: str, name: str) -> types.ModuleType:
  """The config file NAME.py in the folder of the config file `file` (the
  caller's __file__)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(file)),
                           f'{name}.py'))
