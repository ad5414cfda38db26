"""Model construction from `config.model`."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import ml_collections

from cvqvae_jax.models import cvqvae

# model.name -> (use_features, posterior) for the categorical-latent variants
# of paper 2.4 / Table 1: A, B, and C (E when trained from a stage one).
CATEGORICAL_VARIANTS = {
    'vq_argmin': (False, 'argmin'),
    'vq_entropy': (False, 'softmax'),
    'cvqvae': (True, 'softmax'),
}
MODEL_NAMES = tuple(CATEGORICAL_VARIANTS)


def create_model(model_config: ml_collections.ConfigDict, *, image_size: int,
                 channels: int, feature_kinds: Sequence[str]) -> nn.Module:
  """The Flax module named by `model_config.name`."""
  name = model_config.name
  if name not in CATEGORICAL_VARIANTS:
    raise ValueError(f'Unknown model.name {name!r}; available: {MODEL_NAMES}.')
  use_features, posterior = CATEGORICAL_VARIANTS[name]
  return cvqvae.CVQVAE(
      image_size=image_size,
      channels=channels,
      feature_kinds=tuple(feature_kinds),
      encoder_widths=tuple(model_config.encoder_widths),
      feature_widths=tuple(model_config.feature_widths),
      decoder_widths=tuple(model_config.decoder_widths),
      latent_grid=model_config.latent_grid,
      num_codes=model_config.num_codes,
      code_dim=model_config.code_dim,
      num_features=model_config.num_features,
      use_features=use_features,
      posterior=posterior,
      straight_through=model_config.straight_through,
      codebook_init=model_config.codebook_init,
      codebook_init_scale=model_config.codebook_init_scale,
      vq_target=model_config.vq_target,
  )
