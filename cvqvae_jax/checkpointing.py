"""orbax checkpoints of a training run: the train state, the grain iterator
state (so a resumed run sees exactly the data an uninterrupted one would) and
a small JSON description of the model, checked before anything is restored."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Mapping

from absl import logging
from etils import epath
import grain
import jax
import orbax.checkpoint as ocp

from cvqvae_jax import paths

STATE, DATA, MODEL = 'state', 'data', 'model'


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the model being trained."""


def checkpoint_dir(workdir: str) -> str:
  return paths.join(workdir, 'checkpoints')


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True),
      # Named handlers let item_metadata() read a checkpoint's parameter
      # shapes before anything is restored.
      item_handlers={STATE: ocp.StandardCheckpointHandler(),
                     DATA: grain.checkpoint.CheckpointHandler(),
                     MODEL: ocp.JsonCheckpointHandler()})


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iterator: Any, model_description: Mapping[str, Any]) -> None:
  """Asynchronous save; call manager.wait_until_finished() before exit."""
  manager.save(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardSave(state),
      DATA: grain.checkpoint.CheckpointSave(data_iterator),
      MODEL: ocp.args.JsonSave(dict(model_description)),
  }))


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def describe_differences(saved: Mapping[str, Any],
                         current: Mapping[str, Any]) -> list[str]:
  """'field: checkpoint X, config Y' for every field that differs."""
  saved, current = _flatten(saved), _flatten(current)
  lines = []
  for name in sorted(set(saved) | set(current)):
    a, b = saved.get(name, '<absent>'), current.get(name, '<absent>')
    if a != b:
      lines.append(f'{name}: checkpoint {a!r}, config {b!r}')
  return lines


def _path_str(path) -> str:
  """'params/encoder/block_0/...' whatever the key types (a saved tree has
  dict keys where the live state has attributes and tuples)."""
  parts = []
  for key in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return '/'.join(parts)


def shape_mismatches(saved: Any, expected: Any) -> list[str]:
  """Parameter paths whose shapes differ, or that only one tree holds."""
  def shapes(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_str(p): tuple(getattr(v, 'shape', ())) for p, v in leaves}
  a, b = shapes(saved), shapes(expected)
  lines = []
  for path in sorted(set(a) | set(b)):
    if path not in a:
      lines.append(f'{path}: missing in checkpoint, model expects {b[path]}')
    elif path not in b:
      lines.append(f'{path}: in checkpoint {a[path]}, absent from model')
    elif a[path] != b[path]:
      lines.append(f'{path}: checkpoint {a[path]}, model {b[path]}')
  return lines


def latest_description(manager: ocp.CheckpointManager
                       ) -> tuple[int | None, dict[str, Any] | None]:
  """(latest step, the model description saved with it), or (None, None)."""
  step = manager.latest_step()
  if step is None:
    return None, None
  return step, manager.restore(step, args=ocp.args.Composite(
      **{MODEL: ocp.args.JsonRestore()}))[MODEL]


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            data_iterator: Any, model_description: Mapping[str, Any],
            step: int | None = None) -> Any:
  """Restores the latest (or given) step into `abstract_state`'s structure
  and shardings, and the data iterator (if given) in place.

  Raises CheckpointMismatchError naming every field and parameter that
  differs when the checkpoint belongs to another model.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'No checkpoint in {manager.directory}.')
  directory = manager.directory
  saved = manager.restore(step, args=ocp.args.Composite(
      **{MODEL: ocp.args.JsonRestore()}))[MODEL]
  differences = describe_differences(saved, model_description)
  if not differences:
    saved_tree = manager.item_metadata(step)[STATE]
    differences = shape_mismatches(saved_tree, abstract_state)
  if differences:
    raise CheckpointMismatchError(
        f'The checkpoint at {directory}/{step} was written by another model '
        'and cannot be resumed with this config. Differences:\n  '
        + '\n  '.join(differences)
        + '\nUse a new --workdir, or restore the config it was trained with '
        '(its config.json).')
  items = {STATE: ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return restored[STATE]


def restore_params(workdir: str, abstract_params: Any,
                   select: Callable[[str], bool] = lambda path: True,
                   description: Mapping[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Parameters only (no optimizer state) from the latest checkpoint of a
  workdir: for stage two of the two-step training, and for evaluation.

  abstract_params: the model's params as ShapeDtypeStructs (with shardings);
  `select(path)` picks the 'a/b/kernel' paths wanted. With `description`, the
  checkpoint's model description must equal it. Returns ({path: array} of
  the selected parameters, {'directory', 'step', 'model'}). Raises
  FileNotFoundError naming the directory when it holds no checkpoint, and
  CheckpointMismatchError naming every field or wanted path that differs.
  """
  directory = checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    raise FileNotFoundError(
        f'No checkpoints in {directory}: expected the --workdir of a '
        'training run, which holds checkpoints/ (train first, with '
        '--mode=train and that --workdir).')
  manager = ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={STATE: ocp.PyTreeCheckpointHandler(),
                     MODEL: ocp.JsonCheckpointHandler()})
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(
        f'No checkpoints in {directory}: that run has not saved one yet '
        '(train first, or wait for its first checkpoint).')
  described = manager.restore(step, args=ocp.args.Composite(
      **{MODEL: ocp.args.JsonRestore()}))[MODEL]
  wanted = {k: v for k, v in flatten(abstract_params).items() if select(k)}
  differences = []
  if description is not None:
    differences = describe_differences(described, description)
  if not differences:
    saved = flatten(manager.item_metadata(step)[STATE]['params'])
    differences = shape_mismatches(
        {k: saved[k] for k in wanted if k in saved}, wanted)
  if differences:
    model = described.get('model', {})
    raise CheckpointMismatchError(
        f'The checkpoint {directory}/{step} (model {model.get("name")!r}, '
        f'labels {described.get("labels")}, N_c {model.get("num_features")}) '
        'does not fit this model:\n  ' + '\n  '.join(differences))
  target = {'params': unflatten(wanted)}
  restored = manager.restore(step, args=ocp.args.Composite(**{
      STATE: ocp.args.PyTreeRestore(
          item=target,
          restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True)}))[STATE]['params']
  manager.close()
  return flatten(restored), {'directory': directory, 'step': int(step),
                             'model': described.get('model', {})}


def flatten(tree: Any) -> dict[str, Any]:
  """{'a/b/kernel': leaf} of a nested parameter tree (or its metadata)."""
  return {_path_str(p): v
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of flatten."""
  nested: dict[str, Any] = {}
  for path, value in flat.items():
    node = nested
    *parents, leaf = path.split('/')
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return nested


class PreemptionGuard:
  """Notices SIGTERM (what cluster schedulers send before they preempt), so
  the loop can save and stop at a step boundary instead of losing the work
  since the last checkpoint.

  One process: a Python SIGTERM handler. Several (jax.distributed): JAX's
  own preemption notifier catches SIGTERM on whichever process receives it
  and the coordination service picks one step at which every process
  stops (orbax's reached_preemption, which every process calls each step).
  A Python handler there would replace JAX's, so none is installed.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self._manager = manager
    self._signalled = False
    self._previous = None
    if (jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint at the end of '
                    'this step, then stopping.')
    self._signalled = True

  def should_stop(self, step: int) -> bool:
    return self._signalled or self._manager.reached_preemption(step)

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def read_latest_description(workdir: str
                            ) -> tuple[int | None, dict[str, Any] | None]:
  """(latest step, its model description) of a workdir's checkpoints, read
  only; (None, None) when it has none."""
  directory = checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    return None, None
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={MODEL: ocp.JsonCheckpointHandler()})
  step = manager.latest_step()
  described = None
  if step is not None:
    described = manager.restore(step, args=ocp.args.Composite(
        **{MODEL: ocp.args.JsonRestore()}))[MODEL]
  manager.close()
  return step, described
