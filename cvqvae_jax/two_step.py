"""Two-step training (paper 2.4): stage two starts from stage one's C_phi and
tokens, which stay frozen for the first `freeze_steps` steps.

Stage one is a CGVAE (approach D); stage two a CVQVAE (E) or a CGVAE2 (F).
`config.stage_one` makes this the run's own recipe: train.train_and_evaluate
trains stage one for stage_one.share of num_train_steps, then the model
itself for the rest, in one workdir with one step count. `config.init_from`
instead names the workdir of a stage one trained elsewhere.
What moves are the parameter groups the models declare
(models/cvqvae.TRANSFERRED: C_phi and the label tokens), which have the same
paths in both stages; the rest of the stage-two parameters start from their
usual initialisation. `latest_stage` answers which stage a workdir's latest
checkpoint is in (for train, api and scripts).

The freeze is part of the optimizer (optim.create_optimizer), not a branch
in the train step: param_labels() marks the transferred parameters, which
get an Adam that is masked for its first `freeze_steps` updates.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, NamedTuple, Sequence

from absl import logging
from etils import epath
import jax
import ml_collections

from cvqvae_jax import checkpointing
from cvqvae_jax import paths
from cvqvae_jax import models
from cvqvae_jax.data import pipeline
from cvqvae_jax.models import cvqvae

TRANSFERRED, TRAINED = 'transferred', 'trained'
INIT_RECORD = 'init_from.json'
# What a workdir's latest checkpoint holds, for a config (latest_stage): the
# config's own model, its stage one's, or another model's.
MODEL, STAGE_ONE, OTHER = 'model', 'stage one', 'other'


def is_transferred(path: str) -> bool:
  """True for a parameter of the groups two-step training moves
  (models/cvqvae.TRANSFERRED): a module of `path` ('a/b/leaf') matches one
  of them, e.g. 'feature_net/...', '.../tokens_i/...',
  'decoder/scalar_tokens/...'."""
  modules = path.split('/')[:-1]
  return any(fnmatch.fnmatchcase(m, pattern) for m in modules
             for pattern in cvqvae.TRANSFERRED)


def param_labels(params) -> Any:
  """TRANSFERRED or TRAINED for every parameter (multi_transform labels)."""
  return checkpointing.unflatten(
      {k: TRANSFERRED if is_transferred(k) else TRAINED
       for k in checkpointing.flatten(params)})


def check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Clear errors for two-step settings that cannot work (the ranges of
  freeze_steps and stage_one.share: config_checks.validate)."""
  if config.stage_one.model and (config.stage_one.model
                                 not in STAGE_ONE_MODELS):
    raise ValueError(f'stage_one.model must be one of {STAGE_ONE_MODELS} '
                     f"(or '' for one stage), got {config.stage_one.model!r}.")

  if config.init_from and (paths.absolute(config.init_from)
                           == paths.absolute(workdir)):
    raise ValueError('init_from names the workdir of this very run; it must '
                     'name the stage-one workdir.')


def _group(paths) -> list[str]:
  """'module/path (leaf, leaf)' lines: one per module, for the log."""
  modules: dict[str, list[str]] = {}
  for path in sorted(paths):
    module, _, leaf = path.rpartition('/')
    modules.setdefault(module, []).append(leaf)
  return [f'{m} ({", ".join(leaves)})' for m, leaves in modules.items()]


def initialise_from(init_from: str, params, abstract_params,
                    workdir: str | None = None, warm_start: bool = False):
  """Replaces C_phi and the tokens in `params` by those of the latest
  checkpoint in the stage-one workdir `init_from`.

  warm_start (config.stage_one.warm_start, beyond the paper): also every
  other parameter that stage one holds under the same path and shape
  (E_phi, D_theta's blocks and output layer), so that stage two does not
  learn to draw from scratch; what differs (the codebook, D_theta's first
  dense layer, CGVAE's AdaIN) stays fresh. Only C_phi and the tokens are
  frozen for freeze_steps.

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
  if warm_start:
    warm, _ = checkpointing.restore_params(
        init_from, abstract_params, select=lambda p: not is_transferred(p),
        only_matching=True)
    restored = {**restored, **warm}
  flat = checkpointing.flatten(params)
  fresh = sorted(set(flat) - set(restored))
  flat.update(restored)
  record = (paths.join(workdir, INIT_RECORD) if workdir is not None
            else 'the debug log')
  logging.info(
      'Two-step training: restored from %s, step %d (model %r): %d arrays '
      'restored, %d initialised fresh (the list: %s).', source['directory'],
      source['step'], source['model'].get('name'), len(restored), len(fresh),
      record)
  logging.debug('Restored:\n  %s\nInitialised fresh, not restored:\n  %s',
                '\n  '.join(_group(restored)), '\n  '.join(_group(fresh)))
  if workdir is not None and jax.process_index() == 0:
    (epath.Path(workdir) / INIT_RECORD).write_text(json.dumps(
        {'init_from': paths.absolute(init_from),
         'checkpoint': f'{source["directory"]}/{source["step"]}',
         'stage_one_model': source['model'].get('name'),
         'restored': sorted(restored), 'initialised': fresh}, indent=2))
  return checkpointing.unflatten(flat)


STAGE_TWO_MODELS = ('cvqvae', 'cgvae2')
# Models that hold C_phi and the tokens, and so can be a stage one.
STAGE_ONE_MODELS = ('cgvae', 'cgvae2', 'cvqvae')
VARIANTS = {'vq_argmin': 'A (VQ-VAE posterior, no c)',
            'vq_entropy': 'B (Eq. 4 posterior, no c)',
            'cgvae': 'D (CGVAE)'}


def has_stage_one(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` trains a stage one before its model (paper 2.4): for
  CVQVAE (E) and CGVAE2 (F) when config.stage_one.model names one and no
  init_from gives an external stage one."""
  return (bool(config.stage_one.model) and not config.init_from
          and config.model.name in STAGE_TWO_MODELS
          and stage_one_steps(config) > 0)


def is_stage_two(config: ml_collections.ConfigDict) -> bool:
  """Whether `config`'s model starts from a stage one (its own or
  init_from's), so that freeze_steps applies; in a one-stage run
  (A, B, C, D) it is ignored."""
  return bool(config.init_from) or has_stage_one(config)


def stage_one_steps(config: ml_collections.ConfigDict) -> int:
  """round(stage_one.share * num_train_steps): stage one's part of the run."""
  return int(round(config.stage_one.share * config.num_train_steps))


def stage_one_config(config: ml_collections.ConfigDict
                     ) -> ml_collections.ConfigDict:
  """The config of stage one: the same run with model.name =
  stage_one.model for stage_one_steps(config) steps, in one stage.
  model.region_masking is 0 there unless stage one's z is categorical:
  a Gaussian z has no spatial grid to mask."""
  one = config.copy_and_resolve_references()
  one.model.name = config.stage_one.model
  if (one.model.get('region_masking', 0)
      and one.model.name not in models.CATEGORICAL_VARIANTS):
    one.model.region_masking = 0.0
  one.num_train_steps = stage_one_steps(config)
  one.init_from, one.freeze_steps = '', 0
  one.stage_one.model = ''
  return one


# The mechanisms beyond the paper (docs/model.md, "Extensions"): the config
# field ('section.field') that turns each on, and its name in the recipe.
EXTENSIONS = (('objective.z_invariance', 'label adversary on z'),
              ('objective.z_mmd', 'MMD of z across y'),
              ('objective.z_hsic', 'HSIC of z and y'),
              ('objective.c_hsic', 'HSIC of c and z'),
              ('objective.c_labels_hsic', 'HSIC of c and the other labels'),
              ('objective.z_features_hsic', 'HSIC of z and f(y, c)'),
              ('objective.swap_z_cycle', 'swap z cycle'),
              ('objective.swap_c_cycle', 'swap c cycle'),
              ('objective.swap_classification', 'swap classification'),
              ('objective.swap_z_invariance', 'swap invariance of E_phi'),
              ('objective.c_locality', 'c local to its label'),
              ('objective.region_reconstruction',
               'reconstruction weighted in the label regions'),
              ('objective.region_chroma', 'chroma of the label regions'),
              ('model.feature_film', 'FiLM of f(y, c)'),
              ('model.token_dropout', 'token dropout'),
              ('model.region_masking', 'z masked in the label regions'),
              ('model.encoder_masking', "label regions hidden from E_phi"),
              ('model.feature_masking',
               "other labels' regions hidden from each c"),
              ('stage_one.warm_start', 'stage-one E_phi and D_theta kept'))


def extensions(config: ml_collections.ConfigDict) -> list[str]:
  """The names of the extensions that `config` turns on."""
  names = []
  for path, name in EXTENSIONS:
    section, field = path.split('.')
    if config[section].get(field, 0):
      names.append(name)
  return names


def variant(config: ml_collections.ConfigDict) -> str:
  """The paper's letter (Table 1) and name of what `config` trains, with
  the extensions it adds ('E (CVQVAE, two-step) + swap z cycle')."""
  name = config.model.name
  two = is_stage_two(config)
  if name == 'cvqvae':
    base = 'E (CVQVAE, two-step)' if two else 'C (CVQVAE, one stage)'
  elif name == 'cgvae2':
    base = 'F (CGVAE2, two-step)' if two else 'CGVAE2 in one stage'
  else:
    base = VARIANTS.get(name, name)
  return ' + '.join([base, *extensions(config)])


class Latest(NamedTuple):
  """A workdir's latest readable checkpoint: its step, its stage (MODEL,
  STAGE_ONE or OTHER) and its model description; all None without one."""
  step: int | None
  stage: str | None
  description: dict[str, Any] | None


def latest_stage(workdir: str, config: ml_collections.ConfigDict,
                 image_shape: Sequence[int] | None = None, *,
                 manager=None) -> Latest:
  """Which stage `workdir`'s latest readable checkpoint is in for `config`:
  MODEL when it holds config's model, STAGE_ONE when it holds the model of
  config's stage one (has_stage_one), else OTHER (restoring it names every
  difference).

  image_shape: the images' (S, S, C); default the checkpoint's own (the
  config's when it has none). manager: an open checkpoint manager of the
  workdir to read with; default a read-only one.
  """
  if manager is None:
    step, described = checkpointing.read_latest_description(workdir)
  else:
    step, described = checkpointing.latest_description(manager)
  if step is None:
    return Latest(None, None, None)
  if image_shape is None:
    image_shape = (described.get('image_shape')
                   or pipeline.image_shape(config.data))

  def holds(one: ml_collections.ConfigDict) -> bool:
    return not checkpointing.describe_differences(
        described, models.description(one, image_shape))
  if holds(config):
    return Latest(step, MODEL, described)
  if has_stage_one(config) and holds(stage_one_config(config)):
    return Latest(step, STAGE_ONE, described)
  return Latest(step, OTHER, described)


def finished(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Whether `workdir`'s latest checkpoint holds `config`'s own model (not
  its stage one's) at config.num_train_steps or later (latest_stage)."""
  step, stage, _ = latest_stage(workdir, config)
  return stage == MODEL and step >= config.num_train_steps
