"""The optimizer every run uses: Adam at config.learning_rate (constant, or
with warm-up and cosine decay), and in a stage two (paper 2.4) the freeze of
the transferred parameters.

The freeze is part of the optimizer, not a branch in the train step: the
parameters two_step.param_labels marks as transferred (C_phi and the tokens)
get an Adam that is masked (zero updates, Adam state untouched) for its first
`freeze_steps` updates.
"""

from __future__ import annotations

import ml_collections
import optax

from cvqvae_jax import two_step

LR_SCHEDULES = ('constant', 'cosine')


def learning_rate_schedule(config: ml_collections.ConfigDict):
  """config.learning_rate, constant or with warm-up and cosine decay."""
  if config.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f'lr_schedule must be one of {LR_SCHEDULES}, got '
                     f'{config.lr_schedule!r}.')
  if config.lr_schedule == 'constant':
    return config.learning_rate
  # The optimizer of a stage two starts counting at its own first step.
  steps = config.num_train_steps - (two_step.stage_one_steps(config)
                                    if two_step.has_stage_one(config) else 0)
  return optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, config.warmup_steps,
      max(steps, config.warmup_steps + 1))


def create_optimizer(config: ml_collections.ConfigDict
                     ) -> optax.GradientTransformation:
  """Adam; with freeze_steps, C_phi and the tokens get no update (and their
  Adam moments do not move) during the first freeze_steps steps."""
  adam = optax.adam(learning_rate_schedule(config))
  if not (config.freeze_steps and two_step.is_stage_two(config)):
    return adam
  frozen_first = optax.transforms.conditionally_mask(
      optax.adam(learning_rate_schedule(config)),
      lambda count: count >= config.freeze_steps)
  return optax.multi_transform(
      {two_step.TRAINED: adam, two_step.TRANSFERRED: frozen_first},
      two_step.param_labels)
