"""CGVAE and CGVAE2 (paper 2.4, approaches D and F): CVQVAE with a Gaussian z.

Everything but the latent is CVQVAE's (cvqvae.ConditionalVAE): C_phi, the
tokens, f(y, c) and D_theta. z ~ q(z|x, y) = N(mu, diag(sigma^2)) with the
prior N(0, I) ([9]); E_phi is CVQVAE's encoder followed by one dense layer to
(mu, log sigma^2) of size S_z. CGVAE (D, S_z = 100) injects z into every
decoder block through AdaIN as JDVAE does; CGVAE2 (F, S_z = 1024 = the size of
CVQVAE's z_q) does not.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvqvae_jax import objectives
from cvqvae_jax.models import cvqvae
from cvqvae_jax.models import layers
from cvqvae_jax.models import sampling


class CGVAE(cvqvae.ConditionalVAE):
  """Gaussian-latent conditional VAE; `adain` chooses D (True) or F (False)."""
  latent_size: int = 100        # S_z
  adain: bool = True
  latent = 'gaussian'

  def setup(self):
    if self.latent_size < 1:
      raise ValueError(f'latent size S_z must be positive: {self.latent_size}')
    self.feature_net = self._feature_net()
    self.encoder = cvqvae.Encoder(self.encoder_widths, self.latent_grid,
                                  self.code_dim, self.dtype)
    self.to_gaussian = nn.Dense(2 * self.latent_size)
    self.decoder = self._decoder()
    self.z_adversary = self._z_adversary()
    self._setup_encoder_region()

  def decoder_style(self, z_flat: jax.Array) -> jax.Array | None:
    return z_flat if self.adain else None

  def loss_terms(self, out, batch, objective):
    """KL(q(z|x,y) || N(0, I)) summed over S_z, averaged over the batch,
    in place of CVQVAE's KL; no codebook terms."""
    terms = objectives.shared_terms(batch, out)
    terms['kl'] = jnp.mean(objectives.gaussian_kl_to_standard(
        out['z_mean'], out['z_log_var']))
    terms.update(objectives.extension_terms(batch, out, objective))
    return terms

  def posterior(self, x: jax.Array, y: jax.Array):
    """(mean, log variance) of q(z|x, y), each (B, S_z)."""
    h = self.encoder(self.encoder_input(x), y)
    mean, log_var = jnp.split(self.to_gaussian(h.reshape(h.shape[0], -1)), 2,
                              axis=-1)
    return mean, log_var

  def reencode(self, x, y, frozen=True):
    hold = layers.frozen if frozen else (lambda module: module)
    h = hold(self.encoder)(self.encoder_input(x), y)
    mean, _ = jnp.split(hold(self.to_gaussian)(h.reshape(h.shape[0], -1)), 2,
                        axis=-1)
    return mean

  def encode(self, x: jax.Array, y: jax.Array):
    """The most likely z at test time: (None (no code indices), mean)."""
    mean, _ = self.posterior(x, y)
    return None, mean

  def posterior_codes(self, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """As CVQVAE.posterior_codes: the mean (most likely and expected z), a
    sample ('sample' rng), and no per-position entropy."""
    mean, log_var = self.posterior(x, y)
    return {'most_likely': mean, 'expected': mean,
            'sample': sampling.gaussian_sample(self.make_rng('sample'), mean,
                                               log_var)}

  def __call__(self, x: jax.Array, labels: jax.Array, labelled: jax.Array, *,
               train: bool, y_temperature: Any = 1.0,
               z_temperature: Any = 1.0) -> dict[str, Any]:
    """One pass; with train=True z = mean + sigma * eps ('sample' rng)."""
    del z_temperature  # No Gumbel sample of z here.
    logits_y, c, y = self.labels_and_features(x, labels, labelled, train,
                                              y_temperature)
    mean, log_var = self.posterior(x, y)
    z = (sampling.gaussian_sample(self.make_rng('sample'), mean, log_var)
         if train else mean)
    extra = {}
    if train:
      extra = {**self.adversary_outputs(z),
               **self.swap_outputs(z, y, c, mean),
               **self.locality_outputs(x, z, y, c),
               'f_parts': self.feature_parts(y, c)}
    return dict(logits_y=logits_y, c=c, y=y, z_mean=mean, z_log_var=log_var,
                z_q=z, x_hat=(self.train_decode(z, y, c, x) if train
                              else self.decode(z, y, c)), **extra)
