"""The baselines of the paper's Tables 2 and 3: M2, CCVAE and JDVAE.

Each is its latent structure and its loss on the backbone CVQVAE uses (the
residual blocks, E_phi, C_phi, D_theta with AdaIN; paper 3.2: "the
architectures of the encoder and of the decoder are similar to those of
JDVAE"), with a Gaussian z of S_z = model.latent_size[name] (paper: 100).
They share the semi-supervised y, the training loop and the evaluation with
CVQVAE, and expose the same interface (classify, encode, decode,
posterior_codes, loss_terms), so that a swap is manipulate.swap_label for
every model:

* M2 (Kingma et al. 2014): q(y|x), q(z|x,y), p(x|y,z); no features (c is
  empty), so a swap moves only y.
* CCVAE (Joy et al. 2021): q(z|x) = q(z_c|x) q(z_s|x) with, per label, a
  characteristic latent z_c, a classifier q(y|z_c) and a learned conditional
  prior p(z_c|y); the style z_s ~ N(0, I); p(x|z) does not see y. c is z_c,
  so a swap exchanges z_c.
* JDVAE (Zou et al. 2022): y and the features c both in the latent: c is
  Gaussian, q(c|x) from C_phi, with a fixed conditional prior p(c|y); two KL
  terms (of z and of c) with their own weights; AdaIN decoder. A swap
  exchanges y and c.

docs/model.md ("The baselines") says where each follows its reference and
where it follows the paper.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvqvae_jax import objectives
from cvqvae_jax.models import cgvae
from cvqvae_jax.models import cvqvae
from cvqvae_jax.models import sampling


def monte_carlo_log_likelihood(log_q_samples: jax.Array) -> jax.Array:
  """log (1/k sum_s q_s) over the leading axis of k per-sample log values:
  CCVAE's log q(y|x) = log E_{q(z_c|x)} q(y|z_c) from k samples of z_c."""
  k = log_q_samples.shape[0]
  return jax.nn.logsumexp(log_q_samples, axis=0) - math.log(k)


def ccvae_weight(log_q_y_zc: jax.Array, log_q_y_x: jax.Array) -> jax.Array:
  """The weight q(y|z_c) / q(y|x) of CCVAE's supervised bound (Joy et al.
  2021, Eq. 4), from the two log-probabilities of the true label."""
  return jnp.exp(log_q_y_zc - log_q_y_x)


def label_log_prob(logits_y: jax.Array, y: jax.Array) -> jax.Array:
  """sum_v y_v log softmax(logits)_v: log q(y|.) of a one-hot (or relaxed)
  y, per label. logits_y, y: (..., 2). Returns (...)."""
  return jnp.sum(y * jax.nn.log_softmax(logits_y, axis=-1), axis=-1)


class M2(cgvae.CGVAE):
  """Kingma et al.'s M2 with CVQVAE's backbone: CGVAE without features.

  Unlabelled examples add KL(q(y|x) || p(y)), p(y) uniform, to the bound
  (Kingma's -H(q(y|x)) up to the constant log 2), and y is a Gumbel-softmax
  sample of q(y|x) as in every model here (not the sum over both values).
  """
  use_features: bool = False

  def loss_terms(self, out, batch, objective):
    """CGVAE's terms with the KL of z as 'kl_z', plus 'kl_y' (both weighted
    by beta; 'kl' logs their sum, objectives.TOTALS)."""
    del objective  # Weighted by objectives.complete.
    terms = objectives.shared_terms(batch, out)
    terms['kl_z'] = jnp.mean(objectives.gaussian_kl_to_standard(
        out['z_mean'], out['z_log_var']))
    unlabelled = 1.0 - batch['labelled'].astype(jnp.float32)
    terms['kl_y'] = jnp.mean(jnp.sum(
        objectives.categorical_kl_to_uniform(out['logits_y']) * unlabelled,
        axis=-1))
    return terms


class JDVAE(cgvae.CGVAE):
  """JDVAE: CGVAE (AdaIN decoder, q(z|x,y) with prior N(0, I)) whose
  features c are Gaussian latents, q(c|x) = N(mu_c(x), sigma_c(x)^2) from
  C_phi, with the conditional prior p(c|y): for each component of f(y, c)
  that y switches on (c for y = 1 with 'presence'; c0 for y = 0 and c1 for
  y = 1 with 'both'), N(0, I); for the ones it switches off, N(0,
  feature_null_std^2 I), so that c holds nothing where the decoder does not
  use it. Two KL terms: objective.beta for z, objective.beta_features for c.
  """
  feature_null_std: float = 0.1

  def _feature_net(self) -> cvqvae.FeatureNet:
    # Mean and log variance of c for every label.
    return cvqvae.FeatureNet(self.feature_widths,
                             tuple(2 * n for n in self.feature_sizes),
                             self.dtype)

  def feature_posterior(self, x: jax.Array):
    """(logits of q(y|x) (B, L, 2), means of c, log variances of c)."""
    logits, raw = self.feature_net(x)
    halves = [jnp.split(r, 2, axis=-1) for r in raw]
    return logits, tuple(h[0] for h in halves), tuple(h[1] for h in halves)

  def classify(self, x: jax.Array):
    """(logits of q(y|x), the mean of q(c|x) of every label)."""
    logits, means, _ = self.feature_posterior(x)
    return logits, means

  def feature_prior_log_var(self, y: jax.Array) -> tuple[jax.Array, ...]:
    """log variance of p(c|y) per label: 0 where y switches the component
    on, 2 log feature_null_std where it switches it off (relaxed y mixes)."""
    null = 2.0 * math.log(self.feature_null_std)
    out = []
    for l, kind in enumerate(self.feature_kinds):
      n = self.feature_sizes[l]
      y1 = y[:, l, 1:2]
      if kind == 'both':
        on = jnp.concatenate([jnp.broadcast_to(1 - y1, (y.shape[0], n // 2)),
                              jnp.broadcast_to(y1, (y.shape[0], n // 2))], -1)
      else:
        on = jnp.broadcast_to(y1, (y.shape[0], n))
      out.append((1.0 - on) * null)
    return tuple(out)

  def __call__(self, x, labels, labelled, *, train: bool,
               y_temperature: Any = 1.0, z_temperature: Any = 1.0):
    del z_temperature
    logits_y, c_mean, c_log_var = self.feature_posterior(x)
    y = self.sample_labels(logits_y, labels, labelled, train, y_temperature,
                           x.dtype)
    c = c_mean
    if train:
      c = tuple(sampling.gaussian_sample(self.make_rng('sample'), m, v)
                for m, v in zip(c_mean, c_log_var))
    mean, log_var = self.posterior(x, y)
    z = (sampling.gaussian_sample(self.make_rng('sample'), mean, log_var)
         if train else mean)
    return dict(logits_y=logits_y, c=c, c_mean=c_mean, c_log_var=c_log_var,
                y=y, z_mean=mean, z_log_var=log_var, z_q=z,
                x_hat=self.decode(z, y, c))

  def loss_terms(self, out, batch, objective):
    """'kl_z' (weighted by beta) and 'kl_c' (by beta_features) beside the
    shared terms; 'kl' logs their sum (objectives.TOTALS)."""
    del objective  # Weighted by objectives.complete.
    terms = objectives.shared_terms(batch, out)
    terms['kl_z'] = jnp.mean(objectives.gaussian_kl_to_standard(
        out['z_mean'], out['z_log_var']))
    prior = self.feature_prior_log_var(out['y'])
    kl_c = sum(objectives.gaussian_kl(m, v, jnp.zeros_like(m), p)
               for m, v, p in zip(out['c_mean'], out['c_log_var'], prior))
    terms['kl_c'] = jnp.mean(kl_c)
    return terms


class CCVAE(cvqvae.ConditionalVAE):
  """CCVAE with CVQVAE's backbone.

  E_phi (its label tokens fed y = 0: q(z|x) does not see y) and one dense
  layer give q(z|x) = N(mu, sigma^2) over [z_c of every label, z_s]; z_c of
  a label has the size of CVQVAE's c for it (N_c, or 2 N_c for 'both'), z_s
  has S_z = latent_size. Per label a linear classifier q(y|z_c) and a learned
  prior p(z_c|y) (a mean and a log variance per value of y). D_theta(z) gets
  z_s as its flat input, z_c in place of f(y, c), all of z as the AdaIN
  style, and y = 0 to its tokens (p(x|z) does not see y). q(y|x) =
  E_{q(z_c|x)} q(y|z_c) from num_samples samples (training); at test time
  q(y|mean z_c).
  """
  latent_size: int = 100        # S_z of z_s
  num_samples: int = 100        # k samples of z_c for q(y|x)
  latent = 'gaussian'
  # Joy et al.'s bound weights each example by q(y|z_c) / q(y|x): not a
  # weighted sum of the logged terms, so loss_terms returns 'loss' itself.
  own_bound = True

  def setup(self):
    if self.latent_size < 1:
      raise ValueError(f'latent size S_z must be positive: {self.latent_size}')
    self.encoder = cvqvae.Encoder(self.encoder_widths, self.latent_grid,
                                  self.code_dim, self.dtype)
    self.to_gaussian = nn.Dense(
        2 * (sum(self.feature_sizes) + self.latent_size))
    self.classifiers = [nn.Dense(2, name=f'classifier_{l}')
                        for l in range(len(self.feature_kinds))]

    def prior_init(key, shape):  # (value of y, [mean, log variance], n)
      mean = jax.random.normal(key, (shape[0], shape[2]))
      return jnp.stack([mean, jnp.zeros_like(mean)], axis=1)
    self.priors = [self.param(f'prior_{l}', prior_init, (2, 2, n))
                   for l, n in enumerate(self.feature_sizes)]
    self.decoder = self._decoder()

  def posterior(self, x: jax.Array):
    """q(z|x): (means of z_c per label, log variances of z_c per label,
    mean of z_s, log variance of z_s)."""
    no_label = jnp.zeros((x.shape[0], len(self.feature_kinds), 2), x.dtype)
    h = self.encoder(x, no_label)
    mean, log_var = jnp.split(self.to_gaussian(h.reshape(h.shape[0], -1)), 2,
                              axis=-1)
    splits = [sum(self.feature_sizes[:l + 1])
              for l in range(len(self.feature_sizes))]
    c_mean = jnp.split(mean, splits, axis=-1)
    c_log_var = jnp.split(log_var, splits, axis=-1)
    return (tuple(c_mean[:-1]), tuple(c_log_var[:-1]), c_mean[-1],
            c_log_var[-1])

  def label_logits(self, z_c: Sequence[jax.Array]) -> jax.Array:
    """Logits of q(y|z_c) of every label: (..., L, 2)."""
    return jnp.stack([clf(z) for clf, z in zip(self.classifiers, z_c)],
                     axis=-2)

  def conditional_prior(self, y: jax.Array):
    """p(z_c|y) per label: (means, log variances), y one-hot or relaxed."""
    means, log_vars = [], []
    for l, table in enumerate(self.priors):
      mixed = jnp.einsum('bv,vkn->bkn', y[:, l].astype(table.dtype), table)
      means.append(mixed[:, 0])
      log_vars.append(mixed[:, 1])
    return tuple(means), tuple(log_vars)

  def classify(self, x: jax.Array):
    """(logits of q(y | mean z_c), the mean z_c of every label)."""
    c_mean, _, _, _ = self.posterior(x)
    return self.label_logits(c_mean), c_mean

  def encode(self, x: jax.Array, y: jax.Array):
    """(None, the mean of z_s): the part of z that a swap keeps."""
    del y
    return None, self.posterior(x)[2]

  def posterior_codes(self, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    del y
    _, _, mean, log_var = self.posterior(x)
    return {'most_likely': mean, 'expected': mean,
            'sample': sampling.gaussian_sample(self.make_rng('sample'), mean,
                                               log_var)}

  def features(self, y: jax.Array, c: Sequence[jax.Array]) -> jax.Array:
    del y  # p(x|z): z_c enters the decoder whatever y is.
    return jnp.concatenate(c, axis=-1)

  def decode(self, z: jax.Array, y: jax.Array,
             c: Sequence[jax.Array]) -> jax.Array:
    z_flat = z.reshape(z.shape[0], -1)
    f = self.features(y, c)
    return self.decoder(z_flat, jnp.zeros_like(y), f,
                        jnp.concatenate([f, z_flat], axis=-1))

  def __call__(self, x, labels, labelled, *, train: bool,
               y_temperature: Any = 1.0, z_temperature: Any = 1.0):
    del z_temperature
    c_mean, c_log_var, s_mean, s_log_var = self.posterior(x)
    if not train:
      logits = self.label_logits(c_mean)
      y = self.sample_labels(logits, labels, labelled, False, y_temperature,
                             x.dtype)
      return dict(logits_y=logits, c=c_mean, y=y, z_mean=s_mean,
                  z_log_var=s_log_var, z_q=s_mean,
                  x_hat=self.decode(s_mean, y, c_mean))
    z_c = tuple(sampling.gaussian_sample(self.make_rng('sample'), m, v)
                for m, v in zip(c_mean, c_log_var))
    z_s = sampling.gaussian_sample(self.make_rng('sample'), s_mean, s_log_var)
    logits_zc = self.label_logits(z_c)
    # The weight's q(y|z_c) trains the classifier only (Joy et al.'s code).
    logits_zc_fixed = self.label_logits(
        tuple(jax.lax.stop_gradient(z) for z in z_c))
    rng = self.make_rng('sample')
    samples = tuple(
        sampling.gaussian_sample(jax.random.fold_in(rng, l), m, v,
                                 (self.num_samples, *m.shape))
        for l, (m, v) in enumerate(zip(c_mean, c_log_var)))
    # log q(y|x) of both values of every label: a valid set of logits.
    log_q_y_x = monte_carlo_log_likelihood(
        jax.nn.log_softmax(self.label_logits(samples), axis=-1))
    y = self.sample_labels(logits_zc, labels, labelled, True, y_temperature,
                           x.dtype)
    prior_mean, prior_log_var = self.conditional_prior(y)
    return dict(logits_y=log_q_y_x, logits_zc=logits_zc,
                logits_zc_fixed=logits_zc_fixed, c=z_c, c_mean=c_mean,
                c_log_var=c_log_var, prior_mean=prior_mean,
                prior_log_var=prior_log_var, y=y, z_mean=s_mean,
                z_log_var=s_log_var, z_q=z_s, x_hat=self.decode(z_s, y, z_c))

  def loss_terms(self, out, batch, objective):
    """Joy et al.'s bounds, per example (labelled: true y; unlabelled: a
    relaxed sample of q(y|z_c)), in the units of the other models' losses
    (squared error averaged over pixels, nats of the bound times beta):

      w (mse + beta [KL_c + KL_s - sum_labelled log q(y|z_c)
                     + sum_unlabelled KL(q(y|z_c) || U)])
      + alpha * (-log q(y|x))  on labelled labels (the classification term),

    with w = q(y|z_c) / q(y|x) over the labelled labels (1 without any).
    """
    terms = objectives.shared_terms(batch, out)
    labelled = batch['labelled'].astype(jnp.float32)
    y = out['y']
    kl_c = jnp.stack([objectives.gaussian_kl(m, v, pm, pv) for m, v, pm, pv
                      in zip(out['c_mean'], out['c_log_var'],
                             out['prior_mean'], out['prior_log_var'])], -1)
    kl_c = jnp.sum(kl_c, -1)
    kl_s = objectives.gaussian_kl_to_standard(out['z_mean'], out['z_log_var'])
    kl_y = jnp.sum((1.0 - labelled) * objectives.categorical_kl_to_uniform(
        out['logits_zc']), -1)
    log_q_y_zc = jnp.sum(labelled * label_log_prob(
        out['logits_zc'], y), -1)
    weight = ccvae_weight(
        jnp.sum(labelled * label_log_prob(out['logits_zc_fixed'],
                                                     y), -1),
        jnp.sum(labelled * label_log_prob(out['logits_y'], y), -1))
    mse = jnp.mean(jnp.square(batch['image'] - out['x_hat']), axis=(1, 2, 3))
    bound = weight * (mse + objective.beta * (kl_c + kl_s + kl_y - log_q_y_zc))
    terms['kl_c'] = jnp.mean(kl_c)
    terms['kl_z'] = jnp.mean(kl_s)
    terms['kl_y'] = jnp.mean(kl_y)
    any_label = jnp.max(labelled, -1)
    terms['ccvae_weight'] = (jnp.sum(weight * any_label)
                             / jnp.maximum(any_label.sum(), 1.0))
    terms['loss'] = (jnp.mean(bound)
                     + objective.alpha * terms['classification'])
    return terms
