"""The model contract: what the rest of the library uses of a model.

train, evaluation, manipulate, two_step and api use a model only through
`Model` below (two_step also through the parameter groups the models
declare, cvqvae.TRANSFERRED); every name of the registry
(models.MODEL_NAMES) meets it (tests/test_models.py checks each). The models here are Flax modules built
on cvqvae.ConditionalVAE, which gives them C_phi, f(y, c) and D_theta, and
defaults for the hooks.

Shapes: x (B, S, S, C) in [-1, 1]; labels and labelled (B, L); y (B, L, 2),
one-hot or relaxed; c a tuple of L arrays (B, n_l) with n_l =
feature_sizes[l] (0 for a model without features). `output_shapes` gives
the outputs of one pass every model returns.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import jax

LATENTS = ('categorical', 'gaussian')


@runtime_checkable
class Model(Protocol):
  """A conditional VAE of this library.

  latent: 'categorical' (a codebook: z_e and z_q are (B, N_z, N_z, D)) or
  'gaussian' (z_q is a vector (B, latent_size)). own_bound: loss_terms
  returns 'loss' itself (objectives.complete).
  """
  image_size: int
  channels: int
  feature_kinds: Sequence[str]
  latent: str
  own_bound: bool

  @property
  def feature_sizes(self) -> tuple[int, ...]:
    """n_l, the size of c of each label."""

  def __call__(self, x: jax.Array, labels: jax.Array, labelled: jax.Array,
               *, train: bool, y_temperature: Any = 1.0,
               z_temperature: Any = 1.0) -> dict[str, Any]:
    """One pass: at least the keys of output_shapes (train=True samples y
    of unlabelled examples and z with the 'sample' rng)."""

  def classify(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """(logits of q(y|x) (B, L, 2), c)."""

  def encode(self, x: jax.Array, y: jax.Array
             ) -> tuple[jax.Array | None, jax.Array]:
    """The most likely z at test time: (code indices (B, N_z, N_z), or
    None for a Gaussian z; z_q, what decode takes)."""

  def decode(self, z: jax.Array, y: jax.Array,
             c: Sequence[jax.Array]) -> jax.Array:
    """D_theta(z, y, f(y, c)) -> (B, S, S, C)."""

  def posterior_codes(self, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """'most_likely', 'sample' and 'expected' z, each shaped as z_q, and
    for a categorical z the 'entropy' of q per position (B, N_z, N_z)."""

  @property
  def initialises_from_data(self) -> bool:
    """Whether init_from_batch uses its batch (the train loop reads one
    only then)."""

  def init_batches(self, batch_size: int) -> int:
    """How many training batches init_from_batch reads, concatenated (1,
    or more for the regions of model.encoder_masking and
    model.feature_masking)."""

  def init_from_batch(self, params: Any, batch: Mapping[str, jax.Array],
                      rng: jax.Array) -> Any:
    """Parameters set from training examples before the first step
    (CVQVAE's codebook_init='data', the masking options' regions); a
    no-op by default."""

  def loss_terms(self, out: Mapping[str, Any], batch: Mapping[str, Any],
                 objective) -> dict[str, jax.Array]:
    """Scalar terms named as the rows of objectives.TERMS, unweighted
    (plus 'loss' when own_bound, and logged diagnostics)."""


def output_shapes(model: Model, batch_size: int) -> dict[str, Any]:
  """The shape of every output of one pass that other modules read: x_hat,
  logits_y, y, c (a tuple of shapes) and z_q, with z_e for a categorical
  z."""
  b, num_labels = batch_size, len(model.feature_kinds)
  shapes: dict[str, Any] = {
      'x_hat': (b, model.image_size, model.image_size, model.channels),
      'logits_y': (b, num_labels, 2),
      'y': (b, num_labels, 2),
      'c': tuple((b, n) for n in model.feature_sizes),
  }
  if model.latent == 'categorical':
    grid = (b, model.latent_grid, model.latent_grid, model.code_dim)
    shapes.update(z_e=grid, z_q=grid)
  elif model.latent == 'gaussian':
    shapes['z_q'] = (b, model.latent_size)
  else:
    raise ValueError(f'latent must be one of {LATENTS}: {model.latent!r}.')
  return shapes
