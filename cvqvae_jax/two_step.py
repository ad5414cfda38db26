"""Two-step training (paper 2.4): stage two starts from stage one's C_phi and
tokens, which stay frozen for the first `freeze_steps` steps.

Stage one is a CGVAE (approach D); stage two a CVQVAE (E) or a CGVAE2 (F).
Every model names C_phi `feature_net` and its tokens `tokens_i` /
`scalar_tokens` (models/cvqvae.py), so the same parameter paths exist in
both stages. `config.init_from` names the stage-one workdir; the rest of the
stage-two parameters start from their usual initialisation.

The freeze is part of the optimizer, not a branch in the train step: an
optax.multi_transform gives the transferred parameters an Adam that is
masked (zero updates, Adam state untouched) for its first `freeze_steps`
updates.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import optax

from cvqvae_jax import checkpointing

TRANSFERRED, TRAINED = 'transferred', 'trained'
INIT_RECORD = 'init_from.json'


def is_transferred(path: str) -> bool:
  """True for C_phi and the label tokens: 'feature_net/...', '.../tokens_i/...',
  'decoder/scalar_tokens/...'."""
  parts = path.split('/')
  return parts[0] == 'feature_net' or any(
      p.startswith('tokens_') or p == 'scalar_tokens' for p in parts[:-1])


def param_labels(params) -> Any:
  """TRANSFERRED or TRAINED for every parameter (multi_transform labels)."""
  return checkpointing.unflatten(
      {k: TRANSFERRED if is_transferred(k) else TRAINED
       for k in checkpointing.flatten(params)})


def check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Clear errors for two-step settings that cannot work."""
  if config.freeze_steps < 0:
    raise ValueError(f'freeze_steps must be >= 0, got {config.freeze_steps}.')
  if config.freeze_steps and not config.init_from:
    raise ValueError(
        'freeze_steps freezes the C_phi and tokens restored from a stage '
        'one: set init_from to the stage-one workdir as well.')
  if config.init_from and (os.path.abspath(config.init_from)
                           == os.path.abspath(workdir)):
    raise ValueError('init_from names the workdir of this very run; it must '
                     'name the stage-one workdir.')


def create_optimizer(config: ml_collections.ConfigDict
                     ) -> optax.GradientTransformation:
  """Adam; with freeze_steps, C_phi and the tokens get no update (and their
  Adam moments do not move) during the first freeze_steps steps."""
  adam = optax.adam(config.learning_rate)
  if not config.freeze_steps:
    return adam
  frozen_first = optax.transforms.conditionally_mask(
      optax.adam(config.learning_rate),
      lambda count: count >= config.freeze_steps)
  return optax.multi_transform({TRAINED: adam, TRANSFERRED: frozen_first},
                               param_labels)


def _group(paths) -> list[str]:
  """'module/path (leaf, leaf)' lines: one per module, for the log."""
  modules: dict[str, list[str]] = {}
  for path in sorted(paths):
    module, _, leaf = path.rpartition('/')
    modules.setdefault(module, []).append(leaf)
  return [f'{m} ({", ".join(leaves)})' for m, leaves in modules.items()]


def initialise_from(init_from: str, params, abstract_params,
                    workdir: str | None = None):
  """Replaces C_phi and the tokens in `params` by those of the latest
  checkpoint in the stage-one workdir `init_from`.

  abstract_params: the params' ShapeDtypeStructs with shardings. Logs what
  was restored and what keeps its fresh initialisation, by name, and writes
  the same to WORKDIR/init_from.json. Returns the new params.
  """
  try:
    restored, source = checkpointing.restore_params(
        init_from, abstract_params, select=is_transferred)
  except (FileNotFoundError, checkpointing.CheckpointMismatchError) as e:
    raise type(e)(
        f'init_from={init_from!r} cannot initialise C_phi and the tokens. '
        f'{e}\nStage one must be a run with the same labels, '
        'feature combinations, N_c, C_phi widths and image size.') from e
  flat = checkpointing.flatten(params)
  fresh = sorted(set(flat) - set(restored))
  flat.update(restored)
  logging.info(
      'Two-step training: restored from %s, step %d (model %r):\n  %s\n'
      'Initialised fresh, not restored:\n  %s', source['directory'],
      source['step'], source['model'].get('name'),
      '\n  '.join(_group(restored)), '\n  '.join(_group(fresh)))
  if workdir is not None and jax.process_index() == 0:
    with open(os.path.join(workdir, INIT_RECORD), 'w') as f:
      json.dump({'init_from': os.path.abspath(init_from),
                 'checkpoint': f'{source["directory"]}/{source["step"]}',
                 'stage_one_model': source['model'].get('name'),
                 'restored': sorted(restored), 'initialised': fresh},
                f, indent=2)
  return checkpointing.unflatten(flat)


STAGE_ONE_MODEL = 'cgvae'
STAGE_TWO_MODELS = ('cvqvae', 'cgvae2')


def stage_configs(config: ml_collections.ConfigDict, workdir: str, *,
                  stage_two: str = 'cvqvae', stage_one_steps: int | None = None,
                  freeze_steps: int | None = None):
  """The two runs of paper 2.4 from one config: ((config, workdir) of stage
  one, (config, workdir) of stage two).

  Stage one is CGVAE (D) in WORKDIR/stage_one for `stage_one_steps` (default:
  config.num_train_steps); stage two is `stage_two` (E: cvqvae, F: cgvae2) in
  WORKDIR/stage_two, initialised from stage one, with C_phi and the tokens
  frozen for `freeze_steps` (default: config.freeze_steps, or a fifth of the
  stage-two steps when that is 0).
  """
  if stage_two not in STAGE_TWO_MODELS:
    raise ValueError(f'stage two must be one of {STAGE_TWO_MODELS}, got '
                     f'{stage_two!r}.')
  workdir = os.path.abspath(workdir)
  one = config.copy_and_resolve_references()
  one.model.name = STAGE_ONE_MODEL
  one.init_from, one.freeze_steps = '', 0
  if stage_one_steps is not None:
    one.num_train_steps = stage_one_steps
  one_dir = os.path.join(workdir, 'stage_one')
  two = config.copy_and_resolve_references()
  two.model.name = stage_two
  two.init_from = one_dir
  if freeze_steps is None:
    freeze_steps = config.freeze_steps or config.num_train_steps // 5
  two.freeze_steps = freeze_steps
  return (one, one_dir), (two, os.path.join(workdir, 'stage_two'))


def finished(workdir: str, num_steps: int) -> bool:
  """Whether `workdir` holds a checkpoint at num_steps or later."""
  if not os.path.isdir(checkpointing.checkpoint_dir(workdir)):
    return False
  manager = checkpointing.create_manager(workdir, 1)
  latest = manager.latest_step()
  manager.close()
  return latest is not None and latest >= num_steps


def run(config: ml_collections.ConfigDict, workdir: str, **kwargs):
  """Both stages (stage_configs' keyword arguments), each resumed where it
  stopped. Returns stage two's held-out results, or None when a stage was
  preempted (run again to continue)."""
  from cvqvae_jax import train  # pylint: disable=g-import-not-at-top
  (one, one_dir), (two, two_dir) = stage_configs(config, workdir, **kwargs)
  if finished(one_dir, one.num_train_steps):
    logging.info('Stage one already finished in %s.', one_dir)
  else:
    train.train_and_evaluate(one, one_dir)
    if not finished(one_dir, one.num_train_steps):
      return None  # Preempted: its checkpoint is saved.
  results = train.train_and_evaluate(two, two_dir)
  return results if finished(two_dir, two.num_train_steps) else None
