"""orbax checkpoints of a training run: the train state, the grain iterator
state (so a resumed run sees exactly the data an uninterrupted one would) and
a small JSON description of the model, checked before anything is restored."""

from __future__ import annotations

import datetime
import errno
import functools
import json
import logging as std_logging
import os
import shutil
import signal
import sys
import threading
import weakref
import zlib
from typing import Any, Callable, Mapping

from absl import logging
from etils import epath
import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from cvqvae_jax import paths

STATE, DATA, MODEL = 'state', 'data', 'model'
# {'algorithm': 'crc32', 'arrays': {path: digest}}: a checksum of every array
# of the train state, written with the step and checked when it is read.
DIGESTS = 'digests'
# Where a checkpoint that cannot be read is moved: WORKDIR/DAMAGED/<step>-<UTC
# time>, beside checkpoints/ so that orbax never lists it as a step again.
DAMAGED = 'damaged_checkpoints'
# JSON files of a step that read_fully parses (besides *.json).
JSON_FILES = ('_CHECKPOINT_METADATA', '_METADATA', '_sharding', 'metadata')
# In the name of the folder orbax writes a step into before it commits it.
TMP_MARK = '.orbax-checkpoint-tmp'


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the model being trained."""


class NoReadableCheckpointError(FileNotFoundError):
  """Every checkpoint of a workdir is damaged."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint cannot be written (no space left, a write that failed)."""


def checkpoint_dir(workdir: str) -> str:
  return paths.join(workdir, 'checkpoints')


# The managers create_manager made (training's), oldest first: a full disk
# elsewhere in the loop waits for their save in flight
# (disk_full_is_one_line).
_MANAGERS: list[weakref.ref] = []


def create_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  _quiet_asyncio()
  _quiet_failed_saves()
  _quiet_closed_loop_callbacks()
  manager = ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True),
      # Named handlers let item_metadata() read a checkpoint's parameter
      # shapes before anything is restored.
      item_handlers={STATE: ocp.StandardCheckpointHandler(),
                     DATA: grain.checkpoint.CheckpointHandler(),
                     MODEL: ocp.JsonCheckpointHandler(),
                     DIGESTS: ocp.JsonCheckpointHandler()})
  _MANAGERS[:] = [r for r in _MANAGERS if r() is not None]
  _MANAGERS.append(weakref.ref(manager))
  return manager


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iterator: Any, model_description: Mapping[str, Any]) -> None:
  """Asynchronous save; call wait_until_saved(manager) before exit.

  Waits for the previous save first (orbax would too), checks that the
  checkpoint folder has room for this one (check_space), and turns an error
  while writing into CheckpointSaveError (one line; the traceback in the
  debug log), with the half-written folder removed.
  """
  wait_until_saved(manager)
  check_space(manager, step, state, trained=True)
  try:
    manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: grain.checkpoint.CheckpointSave(data_iterator),
        MODEL: ocp.args.JsonSave(dict(model_description)),
        DIGESTS: ocp.args.JsonSave(digests(state)),
    }))
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise _save_failed(manager, step, e) from e


def _digest(array) -> str:
  if isinstance(array, jax.Array) and not array.is_fully_addressable:
    array = array.addressable_data(0)  # Replicated: every copy is equal.
  data = np.ascontiguousarray(np.asarray(array))
  return f'{zlib.crc32(data.view(np.uint8).reshape(-1)):08x}'


def digests(state: Any) -> dict[str, Any]:
  """The CRC-32 of every array of `state`, by flatten's path."""
  return {'algorithm': 'crc32',
          'arrays': {path: _digest(x) for path, x in flatten(state).items()
                     if hasattr(x, 'dtype')}}


def _stored_digests(manager, step) -> dict[str, str] | None:
  """The digests saved with `step`; None for a checkpoint written before
  they were (nothing to check)."""
  if not os.path.isdir(os.path.join(str(manager.directory), str(step),
                                    DIGESTS)):
    return None
  stored = manager.restore(step, args=ocp.args.Composite(
      **{DIGESTS: ocp.args.JsonRestore()}))[DIGESTS]
  return dict(stored['arrays'])


def check_digests(stored: Mapping[str, str] | None,
                  arrays: Mapping[str, Any]) -> None:
  """Raises ValueError naming the arrays whose CRC-32 differs from the one
  saved with them (`arrays`: path -> array read back)."""
  if stored is None:
    return
  differ = sorted(path for path, x in arrays.items()
                  if path in stored and _digest(x) != stored[path])
  missing = sorted(set(arrays) - set(stored))
  if differ or missing:
    raise ValueError(
        f'{len(differ)} array(s) differ from the checksum saved with them '
        f'({", ".join(differ[:3])}{"..." if len(differ) > 3 else ""})'
        + (f'; no checksum for {missing[:3]}' if missing else ''))


def wait_until_saved(manager: ocp.CheckpointManager) -> None:
  """manager.wait_until_finished(), an error of the save in the background
  raised as CheckpointSaveError (the half-written folder removed)."""
  step = _saving_step(manager)
  try:
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise _save_failed(manager, step, e) from e


def _saving_step(manager) -> int | None:
  """The step the manager's save in progress writes, if known."""
  try:
    thread = manager._finalize_thread.get()  # pylint: disable=protected-access
    return None if thread is None else thread.step()
  except Exception:  # pylint: disable=broad-exception-caught
    return None


def _is_local(directory) -> bool:
  return '://' not in str(directory)


def _megabytes(size: float) -> str:
  return f'{size / 1e6:.1f} MB' if size < 1e9 else f'{size / 1e9:.2f} GB'


def _tree_size(path: str) -> int:
  total = 0
  for folder, _, names in os.walk(path):
    for name in names:
      try:
        total += os.path.getsize(os.path.join(folder, name))
      except OSError:
        pass
  return total


def _intact(manager) -> str:
  steps = sorted(manager.all_steps())
  if not steps:
    return 'no step is saved yet'
  if len(steps) == 1:
    return f'step {steps[0]} is intact'
  return (f'steps {", ".join(map(str, steps[:-1]))} and {steps[-1]} are '
          'intact')


def _space_hint(directory: str) -> str:
  return (f'free space in {directory} (or set max_checkpoints_to_keep '
          'lower, or use another --workdir), then run the same command again '
          'to continue')


# A save needs more than its final size while it writes (lock files, the
# OCDBT log before compaction) and the run writes metrics beside it: the
# last checkpoint's size times this, plus SPACE_SLACK bytes.
SPACE_MARGIN, SPACE_SLACK = 1.25, 1 << 20


def needed_space(manager: ocp.CheckpointManager, state: Any = None) -> int:
  """Bytes the next save needs: the size of the latest checkpoint on disk
  (else the bytes of `state`'s arrays) with a margin; 0 without either."""
  directory = str(manager.directory)
  latest = manager.latest_step()
  if latest is not None:
    size = _tree_size(os.path.join(directory, str(latest)))
    if size:
      return int(size * SPACE_MARGIN) + SPACE_SLACK
  if state is None:
    return 0
  size = sum(int(np.prod(getattr(x, 'shape', ()))) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(state) if hasattr(x, 'dtype'))
  return int(size * SPACE_MARGIN) + SPACE_SLACK


def check_space(manager: ocp.CheckpointManager, step: int,
                state: Any = None, trained: bool = False) -> None:
  """Raises CheckpointSaveError (one line: the step, the folder, the bytes
  needed and free, the steps intact) when the checkpoint folder has less
  free space than the save of `step` needs (needed_space); trained: called
  at that save (the steps since the last one are lost), else before they
  are trained. Local folders only: an object store has no free space to
  ask."""
  directory = str(manager.directory)
  if not _is_local(directory) or not os.path.isdir(directory):
    return
  needed = needed_space(manager, state)
  free = shutil.disk_usage(directory).free
  if needed and free < needed:
    raise CheckpointSaveError(
        f'no space left for step {step} in {directory}: needs about '
        f'{_megabytes(needed)}, {_megabytes(free)} free; '
        f'{_intact(manager)}. '
        + ('The steps since the last of them are not saved: ' if trained else
           'Stopped before training steps that could not be saved: ')
        + f'{_space_hint(directory)}.')


def _save_failed(manager, step: int | None, error: BaseException
                 ) -> CheckpointSaveError:
  """The one-line error of a save that failed; removes its temporary
  folder (the steps before stay as they were)."""
  logging.debug('Traceback of the failed save:', exc_info=error)
  directory = str(manager.directory)
  if _is_local(directory) and os.path.isdir(directory):
    for name in os.listdir(directory):
      if TMP_MARK in name and (step is None
                               or name.split('.', 1)[0] == str(step)):
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
  try:
    manager.reload()
  except Exception:  # pylint: disable=broad-exception-caught
    pass
  if _no_space(error):
    what = 'no space left'
  else:
    what = f'the save failed ({_one_line(error)[:200]})'
  where = f'step {step}' if step is not None else 'a checkpoint'
  return CheckpointSaveError(
      f'{what} for {where} in {directory}: {_intact(manager)}. '
      + (_space_hint(directory) if _no_space(error) else
         'Run the same command again to continue from the last intact step')
      + '.')


def _no_space(error: BaseException | None) -> bool:
  while error is not None:
    if (isinstance(error, OSError) and error.errno in (errno.ENOSPC,
                                                       errno.EDQUOT)):
      return True
    if 'No space left' in str(error) or 'ENOSPC' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class _AsyncioNoise:
  """Drops asyncio's 'Task exception was never retrieved' and 'Event loop is
  closed' records: the echoes of a save that failed, already reported in
  one line."""

  def filter(self, record) -> bool:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
      text += f' {record.exc_info[1]}'
    return not ('exception was never retrieved' in text
                or 'Event loop is closed' in text
                or 'Exception in callback' in text)


def _quiet_asyncio() -> None:
  logger = std_logging.getLogger('asyncio')
  if not any(isinstance(f, _AsyncioNoise) for f in logger.filters):
    logger.addFilter(_AsyncioNoise())


def _quiet_closed_loop_callbacks() -> None:
  """TensorStore's callbacks into orbax's event loop, once a failed save
  has closed it, raise 'Event loop is closed' by the hundred through
  sys.unraisablehook (4 lines each): dropped, the first one in the debug
  log; any other unraisable exception goes to the hook as before."""
  previous = sys.unraisablehook
  if getattr(previous, 'cvqvae_jax_quiet', False):
    return
  dropped = [0]

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and 'Event loop is closed' in str(
        error):
      dropped[0] += 1
      if dropped[0] == 1:
        logging.debug('A callback after a failed save (more are dropped):',
                      exc_info=(unraisable.exc_type, error,
                                unraisable.exc_traceback))
      return
    previous(unraisable)

  hook.cvqvae_jax_quiet = True
  sys.unraisablehook = hook


# What orbax's background threads log (at ERROR, with a traceback each) when
# a save fails for want of space, or is cut off by the process's exit.
FAILED_SAVE_MARKS = ('RESOURCE_EXHAUSTED', 'No space left',
                     'after interpreter shutdown')


class _FailedSaveNoise:
  """Keeps orbax's tracebacks of a save that failed for want of space off
  the console (save/wait_until_saved report it in one line); with absl's
  DEBUG verbosity (--verbosity=1) they are shown."""

  def filter(self, record) -> bool:
    if (record.levelno < std_logging.ERROR or '/orbax/' not in
        record.pathname.replace(os.sep, '/')):
      return True
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
      text += f' {record.exc_info[1]}'
    if not any(mark in text for mark in FAILED_SAVE_MARKS):
      return True
    return logging.level_debug()


def _quiet_failed_saves() -> None:
  logger = std_logging.getLogger('absl')
  if not any(isinstance(f, _FailedSaveNoise) for f in logger.filters):
    logger.addFilter(_FailedSaveNoise())


def disk_full_is_one_line(fn: Callable) -> Callable:
  """For a training loop: an OSError of a full disk raised in it (writing
  metrics, TensorBoard events, previews) becomes CheckpointSaveError, one
  line, once the save in flight has ended: that save's own error when it
  failed too (its half-written folder removed), else the steps intact.
  Waiting also keeps orbax's threads from being cut off at exit."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except OSError as e:
      if not _no_space(e):
        raise
      logging.debug('Traceback of the full disk:', exc_info=e)
      managers = [m for m in (r() for r in _MANAGERS) if m is not None]
      for manager in managers:
        wait_until_saved(manager)  # Raises the save's own one line.
      written = getattr(e, 'filename', None) or "the run's outputs"
      if not managers:
        raise CheckpointSaveError(
            f'no space left on device (writing {written}).') from e
      directory = str(managers[-1].directory)
      raise CheckpointSaveError(
          f'no space left on the device of {directory} (writing {written}):'
          f' {_intact(managers[-1])}. {_space_hint(directory)}.') from e

  return wrapper


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


_ABSENT = '<absent>'


def _off(value: Any) -> bool:
  """Absent, or an off value (0, False, '' or None)."""
  return value is _ABSENT or value is None or (
      not isinstance(value, (list, dict)) and not value)


def describe_differences(saved: Mapping[str, Any],
                         current: Mapping[str, Any]) -> list[str]:
  """'field: checkpoint X, config Y' for every field that differs.

  A field absent on one side and off on the other (0, False, '') is no
  difference: fields added to the config later (the extensions of
  docs/model.md) are off by default, so checkpoints written before them
  still load with them off.
  """
  saved, current = _flatten(saved), _flatten(current)
  lines = []
  for name in sorted(set(saved) | set(current)):
    a, b = saved.get(name, _ABSENT), current.get(name, _ABSENT)
    if a != b and not (_ABSENT in (a, b) and _off(a) and _off(b)):
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


def _describe(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  described = manager.restore(step, args=ocp.args.Composite(
      **{MODEL: ocp.args.JsonRestore()}))[MODEL]
  if not isinstance(described, Mapping):
    raise ValueError(f'the model description is {described!r}, not a JSON '
                     'object')
  return described


def _one_line(error: BaseException) -> str:
  text = ' '.join(str(error).split())
  if len(text) > 300:
    text = text[:300] + '...'
  return f'{type(error).__name__}: {text}'


def _newest_first(manager: ocp.CheckpointManager) -> list[int]:
  return sorted(manager.all_steps(), reverse=True)


def latest_description(manager: ocp.CheckpointManager
                       ) -> tuple[int | None, dict[str, Any] | None]:
  """(latest step whose description reads, that description), or (None,
  None). A step whose description cannot be read is skipped with a warning
  (set_aside_damaged moves it out of a run's way first)."""
  for step in _newest_first(manager):
    try:
      return step, _describe(manager, step)
    except Exception as e:  # pylint: disable=broad-exception-caught
      logging.warning('Skipping checkpoint %s/%d: it cannot be read (%s).',
                      manager.directory, step, _one_line(e))
  return None, None


def open_reader(directory: str) -> ocp.CheckpointManager:
  """A read-only manager that restores parameters without the optimizer."""
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={STATE: ocp.PyTreeCheckpointHandler(),
                     MODEL: ocp.JsonCheckpointHandler(),
                     DIGESTS: ocp.JsonCheckpointHandler()})


def read_fully(reader: ocp.CheckpointManager, step: int) -> None:
  """Reads every item of `step` into host memory, whatever model wrote it.

  Raises (any exception) when a file cannot be read or parsed, or when an
  array read back differs in shape or dtype from the checkpoint's own
  metadata.
  """
  root = os.path.join(str(reader.directory), str(step))
  data = os.path.join(root, DATA)
  if not any(n.endswith('.json') for n in os.listdir(data)):
    raise ValueError(f'no data iterator state in {data}')
  # The JSON files a restore reads (the data iterator's state, the model
  # description, the per-array metadata of the train state) and orbax's own
  # record of the step.
  for folder, _, names in os.walk(root):
    for name in names:
      if (name.endswith('.json') or name in JSON_FILES
          or os.path.basename(folder) == 'array_metadatas'):
        path = os.path.join(folder, name)
        try:
          with open(path, 'rb') as f:
            json.load(f)
        except ValueError as e:
          raise ValueError(f'{path} is not valid JSON ({e})') from e
  _describe(reader, step)
  metadata = reader.item_metadata(step)[STATE]
  expected = {path: (tuple(m.shape), np.dtype(m.dtype))
              for path, m in flatten(metadata).items()}
  restore_args = jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
  restored = reader.restore(step, args=ocp.args.Composite(**{
      STATE: ocp.args.PyTreeRestore(restore_args=restore_args)}))[STATE]
  got = {path: (tuple(np.shape(v)), np.asarray(v).dtype)
         for path, v in flatten(restored).items()}
  if got != expected:
    differ = sorted(p for p in set(got) | set(expected)
                    if got.get(p) != expected.get(p))
    raise ValueError('arrays differ from the checkpoint metadata: '
                     f'{differ[:5]}')
  check_digests(_stored_digests(reader, step), flatten(restored))


def _set_aside(workdir: str, step: int) -> str:
  """Moves checkpoints/<step> to WORKDIR/DAMAGED/<step>-<UTC time>."""
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y%m%dT%H%M%S.%fZ')
  target = os.path.join(os.path.abspath(workdir), DAMAGED, f'{step}-{stamp}')
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), target)
  return target


def _unreadable_error(directory: str, damaged: list[tuple[int, str]]
                      ) -> NoReadableCheckpointError:
  listed = '; '.join(f'{directory}/{step} ({why})' for step, why in damaged)
  return NoReadableCheckpointError(
      f'No checkpoint in {directory} can be read: {listed}. Move them away '
      'to start again from step 0, or restore them from a copy.')


def _remove_unfinished_saves(directory: str) -> None:
  """Deletes the <step>.orbax-checkpoint-tmp-* folders of saves cut short
  (orbax never lists them as steps). Only for the workdir's one writer
  (workdir_lock): another job's save in progress looks the same."""
  for name in sorted(os.listdir(directory)):
    if TMP_MARK in name:
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
      logging.info('Removed %s/%s: a save that never finished.', directory,
                   name)


def set_aside_damaged(workdir: str) -> int | None:
  """Before a run writes `workdir` (holding its lock): removes the folders
  of saves cut short, reads its checkpoints fully, newest first, until one
  reads, and moves every newer one that cannot be read to
  WORKDIR/damaged_checkpoints/ (one warning line each, naming the step).

  Returns the newest readable step, or None without checkpoints. Raises
  NoReadableCheckpointError, naming every path, when there are checkpoints
  and none reads (nothing is moved then).
  """
  if '://' in str(workdir):  # Object stores: orbax's own checks only.
    return None
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return None
  if jax.process_index() == 0:
    _remove_unfinished_saves(directory)
  reader = open_reader(directory)
  damaged: list[tuple[int, str]] = []
  readable = None
  try:
    for step in _newest_first(reader):
      try:
        read_fully(reader, step)
      except Exception as e:  # pylint: disable=broad-exception-caught
        damaged.append((step, _one_line(e)))
        continue
      readable = step
      break
  finally:
    reader.close()
  if damaged and readable is None:
    raise _unreadable_error(directory, damaged)
  if jax.process_index() == 0:
    for step, why in damaged:
      target = _set_aside(workdir, step)
      logging.warning('Checkpoint step %d cannot be read (%s): moved it to '
                      '%s; resuming from step %d.', step, why, target,
                      readable)
  if damaged and jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('cvqvae_set_aside_damaged')
  return readable


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            data_iterator: Any, model_description: Mapping[str, Any],
            step: int | None = None) -> Any:
  """Restores the latest (or given) step into `abstract_state`'s structure
  and shardings, and the data iterator (if given) in place.

  Raises CheckpointMismatchError naming every field and parameter that
  differs when the checkpoint belongs to another model.
  """
  if step is not None:
    return _restore_step(manager, abstract_state, data_iterator,
                         model_description, step)
  steps = _newest_first(manager)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {manager.directory}.')
  damaged = []
  for step in steps:  # Newest first; a damaged one is moved aside.
    try:
      return _restore_step(manager, abstract_state, data_iterator,
                           model_description, step)
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-exception-caught
      damaged.append((step, _one_line(e)))
      if step == steps[-1]:
        break
      if jax.process_index() == 0:
        target = _set_aside(os.path.dirname(str(manager.directory)), step)
        logging.warning('Checkpoint step %d cannot be read (%s): moved it '
                        'to %s; trying step %d.', step, damaged[-1][1],
                        target, steps[steps.index(step) + 1])
      manager.reload()
  raise _unreadable_error(str(manager.directory), damaged)


def _restore_step(manager, abstract_state, data_iterator, model_description,
                  step):
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
                   description: Mapping[str, Any] | None = None,
                   only_matching: bool = False
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Parameters only (no optimizer state) from the latest checkpoint of a
  workdir: for stage two of the two-step training, and for evaluation.

  abstract_params: the model's params as ShapeDtypeStructs (with shardings);
  `select(path)` picks the 'a/b/kernel' paths wanted. With `description`, the
  checkpoint's model description must equal it. Returns ({path: array} of
  the selected parameters, {'directory', 'step', 'model'}). With
  `only_matching`, selected paths that the checkpoint lacks or holds in
  another shape are left out instead of raising (a warm start from a model
  that differs in some layers). Raises
  FileNotFoundError naming the directory when it holds no checkpoint, and
  CheckpointMismatchError naming every field or wanted path that differs.
  """
  directory = checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    raise FileNotFoundError(
        f'No checkpoints in {directory}: expected the --workdir of a '
        'training run, which holds checkpoints/ (train first, with '
        '--mode=train and that --workdir).')
  manager = open_reader(directory)
  steps = _newest_first(manager)
  if not steps:
    raise FileNotFoundError(
        f'No checkpoints in {directory}: that run has not saved one yet '
        '(train first, or wait for its first checkpoint).')
  damaged = []
  try:
    for step in steps:
      try:
        return _restore_params(manager, step, abstract_params, select,
                               description, only_matching)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-exception-caught
        # Read only: the damaged step stays where it is (the run that
        # writes this workdir moves it aside when it resumes).
        damaged.append((step, _one_line(e)))
        logging.warning('Skipping checkpoint %s/%d: it cannot be read (%s).',
                        directory, step, damaged[-1][1])
  finally:
    manager.close()
  raise _unreadable_error(directory, damaged)


def _restore_params(manager, step, abstract_params, select, description,
                    only_matching=False):
  directory = str(manager.directory)
  described = _describe(manager, step)
  wanted = {k: v for k, v in flatten(abstract_params).items() if select(k)}
  differences = []
  if description is not None:
    differences = describe_differences(described, description)
  if not differences:
    saved = flatten(manager.item_metadata(step)[STATE]['params'])
    if only_matching:
      wanted = {k: v for k, v in wanted.items() if k in saved and tuple(
          getattr(saved[k], 'shape', ())) == tuple(v.shape)}
      if not wanted:
        return {}, {'directory': directory, 'step': int(step),
                    'model': described.get('model', {})}
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
  stored = _stored_digests(manager, step)
  if stored is not None:
    stored = {k[len('params/'):]: v for k, v in stored.items()
              if k.startswith('params/')}
  check_digests(stored, flatten(restored))
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
  """(latest readable step, its model description) of a workdir's
  checkpoints, read only; (None, None) when it has none."""
  directory = checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    return None, None
  manager = open_reader(directory)
  try:
    return latest_description(manager)
  finally:
    manager.close()
