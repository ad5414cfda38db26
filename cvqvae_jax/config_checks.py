"""The allowed range of every config field that has one, checked in one place
before anything is compiled or read.

validate(config) raises one ValueError naming the field, the value and the
range, e.g. "num_train_steps must be >= 1, got -5." Checks that need more
than the config (a checkpoint, the dataset, the devices) stay where that
is known: the model builders, the data sources, sharding.check_batch_size.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import ml_collections

from cvqvae_jax import objectives
from cvqvae_jax.models import BASELINES
from cvqvae_jax.models import CATEGORICAL_VARIANTS
from cvqvae_jax.models.layers import DTYPES
from cvqvae_jax.optim import LR_SCHEDULES
# Models that train without any label, for which data.supervision_rate may
# be 0. None today: every variant of the paper's Table 1 learns q(y|x).
LABEL_FREE_MODELS: tuple[str, ...] = ()

_ABSENT = object()


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  node: Any = config
  for key in field.split('.'):
    if not hasattr(node, 'get') or key not in node:
      return _ABSENT
    node = node[key]
  return node


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _power_of_two(value) -> bool:
  return _is_int(value) and value >= 1 and not value & (value - 1)


# (field, range as written in the message, test of a value).
def _at_least(low: int) -> tuple[str, Callable[[Any], bool]]:
  return f'>= {low} (an integer)', lambda v: _is_int(v) and v >= low


def _positive() -> tuple[str, Callable[[Any], bool]]:
  return '> 0 (and finite)', lambda v: (_is_number(v) and math.isfinite(v)
                                        and v > 0)


def _non_negative() -> tuple[str, Callable[[Any], bool]]:
  return '>= 0 (and finite)', lambda v: (_is_number(v) and math.isfinite(v)
                                         and v >= 0)


def _one_of(values) -> tuple[str, Callable[[Any], bool]]:
  return f'one of {tuple(values)}', lambda v: v in values


def _between(low: float, high: float, *, low_open: bool, high_open: bool
             ) -> tuple[str, Callable[[Any], bool]]:
  brackets = ('(' if low_open else '[') + f'{low:g}, {high:g}' + (
      ')' if high_open else ']')

  def test(v):
    if not (_is_number(v) and math.isfinite(v)):
      return False
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    return above and below
  return f'in {brackets}', test


def _sizes(low: int) -> tuple[str, Callable[[Any], bool]]:
  return (f'a non-empty tuple of integers >= {low}',
          lambda v: (isinstance(v, (tuple, list)) and len(v) > 0
                     and all(_is_int(x) and x >= low for x in v)))


_POWER_OF_TWO_4 = ('a power of two >= 4 (the feature net and the decoder '
                   'work down to 4x4)',
                   lambda v: _power_of_two(v) and v >= 4)
_POWER_OF_TWO_1 = ('a power of two >= 1', _power_of_two)

# Every field with a fixed range. Fields a config may lack are skipped.
RANGES: tuple[tuple[str, tuple[str, Callable[[Any], bool]]], ...] = (
    ('seed', _at_least(0)),
    ('dtype', _one_of(tuple(DTYPES))),
    ('batch_size', _at_least(1)),
    ('num_train_steps', _at_least(1)),
    ('learning_rate', _positive()),
    ('lr_schedule', _one_of(LR_SCHEDULES)),
    ('warmup_steps', _at_least(0)),
    ('log_every_steps', _at_least(1)),
    ('checkpoint_every_steps', _at_least(1)),
    ('eval_every_steps', _at_least(0)),
    ('sample_every_steps', _at_least(0)),
    ('max_checkpoints_to_keep', _at_least(1)),
    ('freeze_steps', _at_least(0)),
    ('data.image_size', _POWER_OF_TWO_4),
    ('data.supervision_rate', _between(0, 1, low_open=False,
                                       high_open=False)),
    ('data.seed', _at_least(0)),
    ('data.num_train', _at_least(1)),
    ('data.num_test', _at_least(1)),
    ('data.read_threads', _at_least(0)),
    ('data.prefetch_buffer', _at_least(0)),
    ('data.worker_count', _at_least(0)),
    ('data.channels', _one_of((0, 1, 3))),
    ('data.test_fraction', _between(0, 1, low_open=True, high_open=True)),
    ('model.encoder_widths', _sizes(1)),
    ('model.feature_widths', _sizes(1)),
    ('model.decoder_widths', _sizes(1)),
    ('model.latent_grid', _POWER_OF_TWO_1),
    ('model.num_codes', _at_least(1)),
    ('model.code_dim', _at_least(1)),
    ('model.num_features', _at_least(1)),
    ('model.region_examples', _at_least(1)),
    ('model.region_threshold', _between(0, 1, low_open=True,
                                        high_open=False)),
    ('model.distance_scale', _positive()),
    ('model.codebook_init_scale', _positive()),
    ('model.token_dropout', _between(0, 1, low_open=False, high_open=False)),
    ('model.region_masking', _between(0, 1, low_open=False,
                                      high_open=False)),
    # The weight of every loss term (objectives.TERMS).
    *((f'objective.{field}', _non_negative())
      for field in objectives.weight_fields()),
    ('objective.y_temperature_start', _positive()),
    ('objective.y_temperature_end', _positive()),
    ('objective.y_temperature_anneal_steps', _at_least(0)),
    ('objective.z_temperature_start', _positive()),
    ('objective.z_temperature_end', _positive()),
    ('objective.z_temperature_anneal_steps', _at_least(0)),
    ('eval.num_pairs', _at_least(1)),
    ('eval.batch_size', _at_least(1)),
    ('eval.num_examples', _at_least(1)),
    ('eval.curve_examples', _at_least(1)),
    ('eval.classifier_steps', _at_least(1)),
    ('eval.classifier_batch_size', _at_least(1)),
    ('eval.classifier_learning_rate', _positive()),
    ('eval.fid_batch_size', _at_least(1)),
    ('eval.figure_examples', _at_least(1)),
)


def _error(field: str, value: Any, allowed: str) -> ValueError:
  return ValueError(f'{field} must be {allowed}, got {value!r}.')


# The weights of terms computed from the swapped decodes
# (model.swap_consistency; objectives.swap_consistency_terms).
SWAP_WEIGHTS = ('swap_z_cycle', 'swap_c_cycle', 'swap_classification',
                'swap_z_invariance')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first field out of its range, its value
  and the range. Call before anything is compiled or read."""
  for field, (allowed, ok) in RANGES:
    value = _get(config, field)
    if value is not _ABSENT and not ok(value):
      raise _error(field, value, allowed)

  steps = _get(config, 'num_train_steps')
  warmup = _get(config, 'warmup_steps')
  if warmup is not _ABSENT and steps is not _ABSENT and warmup >= steps:
    raise _error('warmup_steps', warmup,
                 f'< num_train_steps ({steps})')

  rate = _get(config, 'data.supervision_rate')
  name = _get(config, 'model.name')
  if rate == 0 and name not in LABEL_FREE_MODELS:
    raise _error('data.supervision_rate', rate,
                 f'in (0, 1] for model.name {name!r}, which learns q(y|x) '
                 'from labelled examples (0 would train it on no label)')

  labels = _get(config, 'data.labels')
  if labels is not _ABSENT and (not isinstance(labels, (tuple, list))
                                or not labels):
    raise _error('data.labels', labels, 'a non-empty tuple of label names')

  grid, size = _get(config, 'model.latent_grid'), _get(config,
                                                        'data.image_size')
  if grid is not _ABSENT and size is not _ABSENT and grid > size:
    raise _error('model.latent_grid', grid,
                 f'<= data.image_size ({size})')

  latent_size = _get(config, 'model.latent_size')
  if latent_size is not _ABSENT:
    for model, value in dict(latent_size).items():
      if not (_is_int(value) and value >= 1):
        raise _error(f'model.latent_size.{model}', value,
                     '>= 1 (an integer)')

  if _get(config, 'stage_one.model'):
    share = _get(config, 'stage_one.share')
    allowed, ok = _between(0, 1, low_open=True, high_open=True)
    if not ok(share):
      raise _error('stage_one.share', share,
                   f'{allowed} (the part of num_train_steps given to stage '
                   "one; stage_one.model='' trains one stage)")

  if not _get(config, 'model.swap_consistency'):
    for weight in SWAP_WEIGHTS:
      value = _get(config, f'objective.{weight}')
      if value not in (_ABSENT, 0, 0.0):
        raise _error(f'objective.{weight}', value,
                     '0 unless model.swap_consistency=True, which computes '
                     'the swapped decodes that the term reads')
  masking = _get(config, 'model.region_masking')
  if masking not in (_ABSENT, 0, 0.0):
    if name not in CATEGORICAL_VARIANTS:
      raise _error('model.region_masking', masking,
                   f'0 for model.name {name!r}: only the categorical models '
                   f'({", ".join(CATEGORICAL_VARIANTS)}) have a z with a '
                   'spatial grid to mask')
  if _get(config, 'model.encoder_masking') is True and name in BASELINES:
    raise _error('model.encoder_masking', True,
                 f'False for the baseline {name!r}: its encoder reads no '
                 'labels, so there is no region to hide from it')
  if _get(config, 'model.feature_masking') is True and name in BASELINES:
    raise _error('model.feature_masking', True,
                 f'False for the baseline {name!r}: its features come from '
                 'its own networks, not from the C_phi that the option '
                 'masks')
  locality = _get(config, 'objective.c_locality')
  if (locality not in (_ABSENT, 0, 0.0)
      and _get(config, 'model.feature_locality') in (_ABSENT, False)):
    raise _error('objective.c_locality', locality,
                 '0 unless model.feature_locality=True, which computes the '
                 'decodes with the mean c that the term reads')
