"""Model construction from `config.model`: the variants A-F of paper 2.4 and
the baselines M2, CCVAE and JDVAE of Tables 2-3 (models/baselines.py)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import ml_collections

from cvqvae_jax.models import baselines
from cvqvae_jax.models import cgvae
from cvqvae_jax.models import cvqvae
from cvqvae_jax.models import layers

# model.name -> (use_features, posterior) for the categorical-latent variants
# of paper 2.4 / Table 1: A, B, and C (E when trained from a stage one).
CATEGORICAL_VARIANTS = {
    'vq_argmin': (False, 'argmin'),
    'vq_entropy': (False, 'softmax'),
    'cvqvae': (True, 'softmax'),
}
# model.name -> AdaIN decoder, for the Gaussian-latent variants D and F; their
# S_z is model.latent_size[name].
GAUSSIAN_VARIANTS = {
    'cgvae': True,
    'cgvae2': False,
}
# model.name -> the baselines of Tables 2-3; their S_z is model.latent_size[name].
BASELINES = {
    'm2': baselines.M2,
    'ccvae': baselines.CCVAE,
    'jdvae': baselines.JDVAE,
}
MODEL_NAMES = (tuple(CATEGORICAL_VARIANTS) + tuple(GAUSSIAN_VARIANTS)
               + tuple(BASELINES))


def create_model(model_config: ml_collections.ConfigDict, *, image_size: int,
                 channels: int, feature_kinds: Sequence[str],
                 dtype: str = 'float32') -> nn.Module:
  """The Flax module named by `model_config.name`; `dtype` ('float32' or
  'bfloat16', config.dtype) is the computation dtype of its networks."""
  name = model_config.name
  if name not in MODEL_NAMES:
    raise ValueError(f'Unknown model.name {name!r}; available: {MODEL_NAMES}.')
  shared = dict(
      image_size=image_size,
      channels=channels,
      feature_kinds=tuple(feature_kinds),
      encoder_widths=tuple(model_config.encoder_widths),
      feature_widths=tuple(model_config.feature_widths),
      decoder_widths=tuple(model_config.decoder_widths),
      latent_grid=model_config.latent_grid,
      code_dim=model_config.code_dim,
      num_features=model_config.num_features,
      dtype=layers.compute_dtype(dtype),
      z_adversary_width=model_config.get('z_adversary_width', 0),
      swap_consistency=model_config.get('swap_consistency', False),
      feature_film=model_config.get('feature_film', False),
      token_dropout=model_config.get('token_dropout', 0.0),
      feature_locality=model_config.get('feature_locality', False),
      region_masking=model_config.get('region_masking', 0.0),
      encoder_masking=model_config.get('encoder_masking', False),
      feature_masking=model_config.get('feature_masking', False),
      region_examples=model_config.get('region_examples', 512),
      region_threshold=model_config.get('region_threshold', 0.5),
  )
  if name in GAUSSIAN_VARIANTS or name in BASELINES:
    sizes = model_config.latent_size
    if name not in sizes:
      raise ValueError(f'model.latent_size has no S_z for {name!r}: {sizes}.')
    if name in BASELINES:
      return BASELINES[name](**shared, latent_size=sizes[name])
    return cgvae.CGVAE(**shared, latent_size=sizes[name],
                       adain=GAUSSIAN_VARIANTS[name])
  use_features, posterior = CATEGORICAL_VARIANTS[name]
  codebook_init = model_config.codebook_init
  if codebook_init == 'auto':
    # VQ-VAE's own init for its argmin posterior; Eq. 4 starts its codes on
    # the encoder's outputs. With N(0, 1) codes far from the small initial
    # z_e, every position's nearest code is the same one and the codebook
    # collapses (docs/model.md, "Why the codebook init matters").
    codebook_init = 'uniform' if posterior == 'argmin' else 'data'
  return cvqvae.CVQVAE(
      **shared,
      use_features=use_features,
      num_codes=model_config.num_codes,
      posterior=posterior,
      straight_through=model_config.straight_through,
      codebook_init=codebook_init,
      codebook_init_scale=model_config.codebook_init_scale,
      vq_target=model_config.vq_target,
      distance_scale=model_config.distance_scale,
  )


def feature_kinds(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The feature kind (layers.FEATURE_KINDS: how f(y, c) combines y and c)
  of each of config.data.labels: model.feature_combination[label], else
  model.default_feature_combination."""
  table = dict(config.model.feature_combination)
  return tuple(table.get(l, config.model.default_feature_combination)
               for l in config.data.labels)


def for_config(config: ml_collections.ConfigDict,
               image_shape: Sequence[int]) -> nn.Module:
  """The model of a whole config for images of `image_shape` (S, S, C)."""
  return create_model(config.model, image_size=image_shape[0],
                      channels=image_shape[-1],
                      feature_kinds=feature_kinds(config),
                      dtype=config.get('dtype', 'float32'))


def description(config: ml_collections.ConfigDict,
                image_shape: Sequence[int]) -> dict[str, Any]:
  """What a checkpoint records of its model, and what must match for it to
  be resumed or loaded with `config`.

  Of the baselines' S_z, only the trained model's: checkpoints written
  before the baselines existed stay readable. config.dtype is not part of
  it: the parameters are float32 either way, so a run may resume, or a
  model be loaded, in the other dtype.
  """
  model = config.model.to_dict()
  if 'latent_size' in model:
    model['latent_size'] = {
        k: v for k, v in model['latent_size'].items()
        if k not in BASELINES or k == config.model.name}
  return {'model': model, 'image_shape': list(image_shape),
          'labels': list(config.data.labels)}
