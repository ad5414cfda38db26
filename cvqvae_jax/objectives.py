"""The paper's objective (sections 2.2-2.3) as pure, jit-friendly functions.

Eq. 6, the evidence lower bound of one example, with the squared error in
place of log p(x | y, z, c) (Eq. 3; its variance v becomes the KL weight
beta), plus the three terms paper 2.3 adds:

    L = ||x - D(y, z, c)||^2                          Eq. 6, first term
        + beta * KL(q(z | x, y) || p(z))               Eq. 6, second term
        + alpha * -log q(y | x)                        labelled examples only
        + ||sg[z_e] - z_q||^2                          codebook term [18]
        + commitment * ||z_e - sg[z_q]||^2             commitment term [18]

A model's `loss_terms` (models/) returns its terms unweighted: the ones every
model has from `shared_terms` (the squared error and the classification term),
its KL (CVQVAE the entropy KL of Eq. 4's categorical posterior,
`categorical_kl_loss`; the Gaussian-latent models the closed-form Gaussian
KL) and, for a codebook, the VQ terms (`codebook_losses`). TERMS below is the
one table of their weights; `complete` forms L as their weighted sum, the
logged terms and the list the train loop checks for NaN and Inf. A model
whose bound is not a weighted sum of scalar terms (CCVAE's per-example
weights) sets `own_bound = True` and returns 'loss' itself. Adding a term is
one function (its value, returned by a model's loss_terms) and one row of
TERMS.

Reductions follow the authors' JDVAE code (docs/model.md, "Objective"): the
squared error is averaged over every pixel and channel, the KL is summed over
latent positions (or dimensions) and averaged over the batch, the
classification term is averaged over the labelled examples, and the
codebook/commitment terms are element means.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Term:
  """One row of TERMS.

  weight: the name of a field of config.objective, or a fixed number.
  shown: its name on the console's progress line ('' for none); fmt: the
  format of its value there.
  """
  weight: str | float
  shown: str = ''
  fmt: str = '.4f'


# Every loss term, in the order L sums them, and its weight. A run logs every
# row (0 where its model lacks the term), so that metrics.jsonl has the same
# keys for every model.
TERMS: dict[str, Term] = {
    'reconstruction': Term(1.0, 'recon'),
    'kl': Term('beta', 'kl', '.3g'),           # KL of z (CVQVAE, CGVAE)
    'kl_z': Term('beta'),                      # the baselines' KL of z
    'classification': Term('alpha', 'class'),
    'codebook': Term(1.0),
    'commitment': Term('commitment'),
    'kl_y': Term('beta'),                      # M2, CCVAE: KL(q(y|.) || U)
    'kl_c': Term('beta_features'),             # JDVAE's KL of c (CCVAE: z_c)
    # Beyond the paper (docs/model.md, "Extensions"); their weights are 0
    # unless a config turns them on. The adversary's own fit is weighted 1:
    # it trains only the adversary.
    'z_adversary': Term(1.0),
    'z_invariance': Term('z_invariance'),
    'z_mmd': Term('z_mmd'),
    'z_hsic': Term('z_hsic'),
    'c_hsic': Term('c_hsic'),
    'c_labels_hsic': Term('c_labels_hsic'),
    'z_features_hsic': Term('z_features_hsic'),
    'swap_z_cycle': Term('swap_z_cycle'),
    'swap_c_cycle': Term('swap_c_cycle'),
    'swap_classification': Term('swap_classification'),
    'swap_z_invariance': Term('swap_z_invariance'),
    'c_locality': Term('c_locality'),
    'region_reconstruction': Term('region_reconstruction'),
    'region_chroma': Term('region_chroma'),
}
# Logged sums, not weighted: a model whose KL is in parts (the baselines)
# logs their sum as 'kl' (each part is weighted by its own row).
TOTALS: dict[str, tuple[str, ...]] = {'kl': ('kl_c', 'kl_z', 'kl_y')}


def weight(name: str, objective) -> float:
  """The weight of term `name` (a row of TERMS) under config.objective."""
  spec = TERMS[name].weight
  return getattr(objective, spec) if isinstance(spec, str) else spec


def weight_fields() -> tuple[str, ...]:
  """The config.objective fields that weight a term, each once."""
  return tuple(dict.fromkeys(t.weight for t in TERMS.values()
                             if isinstance(t.weight, str)))


def weighted_loss(terms: Mapping[str, jax.Array], objective) -> jax.Array:
  """L above: sum over the rows of TERMS present in `terms` of weight *
  term (absent terms count 0; keys that are not rows are not weighted).

  objective: config.objective (beta, alpha, commitment, beta_features).
  """
  total = None
  for name in TERMS:
    if name not in terms:
      continue
    fixed_one = TERMS[name].weight == 1  # a fixed 1: the term itself
    value = terms[name] if fixed_one else weight(name, objective) * terms[name]
    total = value if total is None else total + value
  if total is None:
    raise ValueError(f'No loss term of {tuple(TERMS)} in {tuple(terms)}.')
  return total


def logged_terms() -> tuple[str, ...]:
  """The keys every run logs and checks for NaN and Inf: 'loss' and every
  row of TERMS."""
  return ('loss', *TERMS)


def complete(terms: Mapping[str, jax.Array], objective, *,
             own_bound: bool = False) -> dict[str, jax.Array]:
  """A model's terms (its loss_terms) with 'loss', the TOTALS and 0 for
  every row of TERMS it lacks: what a train step logs.

  own_bound: the model's bound is not the weighted sum (CCVAE): its terms
  hold 'loss'. Otherwise 'loss' is weighted_loss(terms).
  """
  terms = dict(terms)
  if own_bound != ('loss' in terms):
    raise ValueError(
        "A model with own_bound returns 'loss' from loss_terms, and only "
        f'such a model does (own_bound={own_bound}, terms {tuple(terms)}).')
  if not own_bound:
    terms['loss'] = weighted_loss(terms, objective)
  for name, parts in TOTALS.items():
    if name not in terms and any(p in terms for p in parts):
      present = [terms[p] for p in parts if p in terms]
      total = present[0]
      for value in present[1:]:
        total = total + value
      terms[name] = total
  for name in TERMS:
    terms.setdefault(name, jnp.zeros((), jnp.float32))
  return terms


def model_terms(model, out: Mapping[str, Any], batch: Mapping[str, Any],
                objective) -> dict[str, jax.Array]:
  """complete() of model.loss_terms(out, batch, objective): the loss and
  every logged term of one training pass `out` of `model`."""
  return complete(model.loss_terms(out, batch, objective), objective,
                  own_bound=model.own_bound)


def first_non_finite(metrics: Mapping[str, Any]) -> tuple[str, float] | None:
  """(name, value) of the first of logged_terms() in `metrics` (host
  values) that is NaN or Inf, or None."""
  for name in logged_terms():
    if name in metrics:
      value = float(metrics[name])
      if not math.isfinite(value):
        return name, value
  return None


def shared_terms(batch: Mapping[str, jax.Array],
                 out: Mapping[str, Any]) -> dict[str, jax.Array]:
  """The terms every model has: the squared error of out['x_hat'] against
  batch['image'] and -log q(y|x) of out['logits_y'] on the labelled labels."""
  return {
      'reconstruction': reconstruction_loss(batch['image'], out['x_hat']),
      'classification': classification_loss(
          out['logits_y'], batch['label'], batch['labelled']),
  }


def reconstruction_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
  """Squared error averaged over every pixel and channel (F.mse_loss)."""
  return jnp.mean(jnp.square(x - x_hat))


def classification_loss(logits_y: jax.Array, labels: jax.Array,
                        labelled: jax.Array) -> jax.Array:
  """-log q(y|x) averaged over the labelled examples, summed over labels.

  logits_y: (B, L, 2); labels: (B, L); labelled: (B, L) bool. A label with no
  labelled example in the batch contributes 0.
  """
  log_q = jax.nn.log_softmax(logits_y, axis=-1)
  nll = -jnp.take_along_axis(log_q, labels[..., None].astype(jnp.int32),
                             axis=-1)[..., 0]
  mask = labelled.astype(nll.dtype)
  per_label = jnp.sum(nll * mask, axis=0) / jnp.maximum(mask.sum(axis=0), 1.0)
  return jnp.sum(per_label)


def categorical_kl_to_uniform(logits: jax.Array) -> jax.Array:
  """KL(softmax(logits) || Uniform(K)) = log K - H, per position.

  logits: (..., K). Returns (...). Computed from log_softmax, and terms with
  zero probability contribute exactly 0, so the value is finite for any finite
  or -inf logits.
  """
  num_classes = logits.shape[-1]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(log_p)
  # p * log p -> 0 as p -> 0; the inner where keeps 0 * -inf out of both
  # the value and the gradient.
  neg_entropy = jnp.sum(p * jnp.where(p > 0, log_p, 0.0), axis=-1)
  return jnp.maximum(math.log(num_classes) + neg_entropy, 0.0)


def categorical_kl_loss(z_logits: jax.Array) -> jax.Array:
  """Eq. 6's KL for a categorical z with the uniform prior p(z): the entropy
  KL sum_ij KL(q(z_ij | x, y) || Uniform(K)) = sum_ij (log K - H(q_ij))
  (paper 2.3), averaged over the batch.

  z_logits: (B, N_z, N_z, K) logits of q(z_ij | x, y).
  """
  kl = categorical_kl_to_uniform(z_logits)
  return jnp.mean(jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1))


def constant_categorical_kl(num_positions: int, num_codes: int) -> jax.Array:
  """Eq. 6's KL for VQ-VAE's one-hot posterior (variant A, [18]): log K at
  each of the num_positions latent positions, a constant with no gradient
  (the reason paper 2.3 replaces that posterior by Eq. 4)."""
  return jnp.asarray(num_positions * math.log(num_codes), jnp.float32)


def gaussian_kl_to_standard(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis."""
  return -0.5 * jnp.sum(1 + log_var - jnp.square(mean) - jnp.exp(log_var),
                        axis=-1)


def gaussian_kl(mean_q: jax.Array, log_var_q: jax.Array, mean_p: jax.Array,
                log_var_p: jax.Array) -> jax.Array:
  """KL(N(mean_q, exp(log_var_q)) || N(mean_p, exp(log_var_p))) of diagonal
  Gaussians, summed over the last axis (the conditional priors of CCVAE and
  JDVAE). With mean_p = log_var_p = 0 it is gaussian_kl_to_standard."""
  return 0.5 * jnp.sum(
      log_var_p - log_var_q
      + (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p)) / jnp.exp(log_var_p)
      - 1.0, axis=-1)


def codebook_losses(z_e: jax.Array,
                    z_code: jax.Array) -> tuple[jax.Array, jax.Array]:
  """VQ-VAE terms: (||sg[z_e] - e||^2, ||z_e - sg[e]||^2), element means.

  z_e: encoder output; z_code: the selected codebook vectors, same shape.
  """
  sg = jax.lax.stop_gradient
  codebook = jnp.mean(jnp.square(sg(z_e) - z_code))
  commitment = jnp.mean(jnp.square(z_e - sg(z_code)))
  return codebook, commitment


def adversary_fit_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Cross-entropy of the adversary's q_A(y|z) against the labels the model
  used (one-hot where known, its own relaxed sample elsewhere), summed over
  labels and averaged over the batch. logits, y: (B, L, 2)."""
  log_q = jax.nn.log_softmax(logits, axis=-1)
  return jnp.mean(jnp.sum(-jnp.sum(y * log_q, axis=-1), axis=-1))


def invariance_loss(logits: jax.Array) -> jax.Array:
  """KL(Uniform(2) || q_A(y|z)), summed over labels, averaged over the
  batch: 0 when the adversary cannot tell y from z. The encoder minimises
  it through the adversary held fixed (CSVAE's entropy objective in its
  bounded form). logits: (B, L, 2)."""
  log_q = jax.nn.log_softmax(logits, axis=-1)
  k = logits.shape[-1]
  kl = -math.log(k) - jnp.mean(log_q, axis=-1)
  return jnp.mean(jnp.sum(kl, axis=-1))


def invariance_terms(out: Mapping[str, Any]) -> dict[str, jax.Array]:
  """z_adversary (fits the adversary only) and z_invariance (trains the
  encoder only) of a pass that ran the label adversary (out['adversary_fit'],
  out['adversary_frozen'] and out['y']); {} for a pass without it."""
  if 'adversary_fit' not in out:
    return {}
  y = jax.lax.stop_gradient(out['y'])
  return {'z_adversary': adversary_fit_loss(out['adversary_fit'], y),
          'z_invariance': invariance_loss(out['adversary_frozen'])}


def swap_consistency_terms(out: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Re-encoding consistency of the swapped decodes (models' swap_outputs):

  swap_z_cycle: E_phi of the fake against the base's z (the face kept),
    element mean of the squared difference;
  swap_c_cycle: f(y, c) read by C_phi from the fake against the donor's
    f(y, c) (the features moved), element mean;
  swap_classification: -log q(y_donor | fake), summed over labels, averaged
    over the batch (the label moved);
  swap_z_invariance: E_phi, trained, of the fake held fixed against the
    base's z (normalised_distance): z leaves out what the swap changed.
  Targets are held fixed. {} for a pass without swapped decodes.
  """
  if 'swap_f' not in out:
    return {}
  sg = jax.lax.stop_gradient
  log_q = jax.nn.log_softmax(out['swap_logits_read'], axis=-1)
  y = sg(out['swap_y'])
  return {
      'swap_z_cycle': jnp.mean(jnp.square(out['swap_z_read']
                                          - sg(out['swap_z_target']))),
      'swap_c_cycle': jnp.mean(jnp.square(out['swap_f_read']
                                          - sg(out['swap_f']))),
      'swap_classification': jnp.mean(jnp.sum(-jnp.sum(y * log_q, -1), -1)),
      'swap_z_invariance': normalised_distance(out['swap_z_invariant_read'],
                                               out['swap_z_target']),
  }


def normalised_distance(read: jax.Array, target: jax.Array) -> jax.Array:
  """Squared distance of `read` from `target` (held fixed), both (B, ...),
  summed over each example's entries and averaged over the batch, divided by
  the target's total variance over the batch: 0 when read equals target,
  2 in expectation when read is an independent draw of the same
  distribution, and the same whatever the scale of z, so that the encoder cannot meet it by shrinking
  z (the first round's swap z cycle diverged through that scale)."""
  n = target.shape[0]
  read = read.reshape(n, -1).astype(jnp.float32)
  target = jax.lax.stop_gradient(target.reshape(n, -1).astype(jnp.float32))
  spread = jnp.sum(jnp.var(target, axis=0))
  return jnp.mean(jnp.sum(jnp.square(read - target), -1)) / (spread + 1e-6)


# Bandwidths of z's kernel, as multiples of the median pairwise distance: the
# scales at which a probe of z could read y (docs/model.md, "Extensions").
MMD_BANDWIDTHS = (1.0, 0.5, 0.25)


def label_mmd(z: jax.Array, y: jax.Array) -> jax.Array:
  """How differently z is distributed for y = 1 and y = 0 within a batch:
  the unbiased squared maximum mean discrepancy between the two classes'
  z (the penalty of the variational fair autoencoder, Louizos et al. 2016,
  with y in the role of the sensitive variable), summed over labels.

  The kernel is the mean of RBF kernels at MMD_BANDWIDTHS times the median
  squared distance (held fixed) plus the linear kernel, both on z
  standardised over the batch, so it is invariant to the scale of z; its
  linear part is the mean over dimensions of the squared difference of the
  class means. 0 in expectation when z does not depend on y, and there is
  no adversary to fool. Soft labels weight each example's membership.
  z: (B, ...) latents; y: (B, L, 2) one-hot or relaxed labels.
  """
  n = z.shape[0]
  z = z.reshape(n, -1).astype(jnp.float32)
  z = (z - z.mean(0)) / (z.std(0) + 1e-6)
  d2 = jnp.maximum(jnp.sum(jnp.square(z[:, None] - z[None]), -1), 0.0)
  off = ~jnp.eye(n, dtype=bool)
  median = jax.lax.stop_gradient(
      jnp.nanmedian(jnp.where(off, d2, jnp.nan))) + 1e-6
  k = sum(jnp.exp(-d2 / (b * b * median)) for b in MMD_BANDWIDTHS)
  k = k / len(MMD_BANDWIDTHS) + z @ z.T / z.shape[1]
  total = jnp.zeros((), jnp.float32)
  for l in range(y.shape[1]):
    w1 = y[:, l, 1].astype(jnp.float32)
    w0 = 1.0 - w1
    within = lambda w: (jnp.sum(jnp.outer(w, w) * k * off)
                        / jnp.maximum(jnp.sum(jnp.outer(w, w) * off), 1e-6))
    across = (jnp.sum(jnp.outer(w1, w0) * k)
              / jnp.maximum(jnp.sum(w1) * jnp.sum(w0), 1e-6))
    total = total + within(w1) + within(w0) - 2.0 * across
  return total


def z_mmd_terms(out: Mapping[str, Any], objective) -> dict[str, jax.Array]:
  """z_mmd: label_mmd of the decoder's z (out['z_q']) and the labels the
  pass used (held fixed), when objective.z_mmd > 0; else {}."""
  if not objective.get('z_mmd', 0.0):
    return {}
  return {'z_mmd': label_mmd(out['z_q'], jax.lax.stop_gradient(out['y']))}


def _centred_rbf(z: jax.Array) -> jax.Array:
  """RBF kernels of z at every latent position, each at that position's
  median squared distance (held fixed), doubly centred (H K H):
  (B, ..., D) -> (B, B, P); a (B, D) input is one position."""
  n = z.shape[0]
  z = z.reshape(n, -1, z.shape[-1]).astype(jnp.float32)
  d2 = jnp.sum(jnp.square(z[:, None] - z[None]), -1)        # (B, B, P)
  rows, cols = jnp.triu_indices(n, 1)
  median = jax.lax.stop_gradient(jnp.median(d2[rows, cols], axis=0))
  k = jnp.exp(-d2 / (median + 1e-8))
  k = k - k.mean(0, keepdims=True)
  return k - k.mean(1, keepdims=True)


def _alignment(k: jax.Array, m: jax.Array) -> jax.Array:
  """Centred kernel alignment <K, M> / (|K| |M|) of centred (B, B, ...)
  kernels, over the first two axes; 0 where either is 0."""
  inner = jnp.sum(k * m, axis=(0, 1))
  norms = (jnp.sqrt(jnp.sum(jnp.square(k), axis=(0, 1)))
           * jnp.sqrt(jnp.sum(jnp.square(m), axis=(0, 1))))
  return inner / jnp.maximum(norms, 1e-8)


def label_cka(z: jax.Array, y: jax.Array) -> jax.Array:
  """How much z depends on y within a batch: the normalised
  Hilbert-Schmidt independence criterion (centred kernel alignment) between
  an RBF kernel on z and the linear kernel on each label's indicator (the
  HSIC penalty of fair representations, Quadrianto et al. 2019, in the
  normalised form of Kornblith et al. 2019).

  It is taken at every latent position separately (an RBF kernel on that
  position's vector, at its median squared distance, held fixed) and
  averaged over positions, then summed over labels: it sees what any single
  position says of y, which is where a convolutional encoder puts a local
  label such as glasses. The biased (V-statistic) estimate is >= 0, so it
  cannot be driven below zero, and each position's lies in [0, 1] whatever
  the scale of z: 1 when the kernel is y's, about 1 / sqrt(B) when z is
  independent of y (the sampling noise of a batch of B).
  z: (B, ..., D) latents ((B, D): one position); y: (B, L, 2).
  """
  k = _centred_rbf(z)                                        # (B, B, P)
  total = jnp.zeros((), jnp.float32)
  for l in range(y.shape[1]):
    u = y[:, l, 1].astype(jnp.float32)
    u = u - u.mean()
    total = total + jnp.mean(_alignment(k, jnp.outer(u, u)[..., None]))
  return total


def features_cka(c: Sequence[jax.Array], z: jax.Array) -> jax.Array:
  """How much each label's features c depend on z within a batch: the
  centred kernel alignment between an RBF kernel on c_l (at its median
  distance) and the mean over latent positions of z's RBF kernels, summed
  over labels. What z already carries (the face, the background) is what
  c should not: 0 when c_l is independent of z, 1 when they induce the
  same similarities. The diagonals (each example with itself) are left
  out: with them two unrelated high-dimensional kernels align through their
  diagonals alone. c: one (B, n_l) array per label; z: (B, ..., D)."""
  off = 1.0 - jnp.eye(z.shape[0])
  k_z = jnp.mean(_centred_rbf(z), axis=-1) * off
  total = jnp.zeros((), jnp.float32)
  for c_l in c:
    total = total + _alignment(_centred_rbf(c_l)[..., 0] * off, k_z)
  return total


def _encoder_output(out: Mapping[str, Any]) -> jax.Array:
  """E_phi's continuous output of a pass: CVQVAE's z_e, the Gaussian mean."""
  return out['z_e'] if 'z_e' in out else out['z_mean']


def z_hsic_terms(out: Mapping[str, Any], objective) -> dict[str, jax.Array]:
  """z_hsic: label_cka of E_phi's output (CVQVAE's continuous z_e, the
  Gaussian models' mean) and the labels the pass used (held fixed), when
  objective.z_hsic > 0; else {}."""
  if not objective.get('z_hsic', 0.0):
    return {}
  return {'z_hsic': label_cka(_encoder_output(out),
                              jax.lax.stop_gradient(out['y']))}


def c_hsic_terms(out: Mapping[str, Any], objective) -> dict[str, jax.Array]:
  """c_hsic: features_cka of each label's c (out['c']) and E_phi's output
  held fixed, when objective.c_hsic > 0; else {}. It trains C_phi to leave
  out of c what z knows, not E_phi to forget it."""
  if not objective.get('c_hsic', 0.0):
    return {}
  return {'c_hsic': features_cka(
      out['c'], jax.lax.stop_gradient(_encoder_output(out)))}


def z_features_cka(z: jax.Array, f: Sequence[jax.Array]) -> jax.Array:
  """How much z, at any one latent position, knows of each label's f(y, c):
  the centred kernel alignment between z's RBF kernel at each position and
  an RBF kernel on f_l (both at their median distance), averaged over
  positions and summed over labels, the diagonals left out (features_cka).
  Where features_cka asks whether c repeats the face that z draws, this
  asks whether z (at the eyes, say) repeats the look that f carries: the
  glasses' colour that c should carry alone. z: (B, ..., D); f: one
  (B, n_l) array per label (f(y, c) of that label; 0 where it is absent)."""
  off = (1.0 - jnp.eye(z.shape[0]))[..., None]
  k_z = _centred_rbf(z) * off                                # (B, B, P)
  total = jnp.zeros((), jnp.float32)
  for f_l in f:
    total = total + jnp.mean(_alignment(k_z, _centred_rbf(f_l) * off))
  return total


def z_features_hsic_terms(out: Mapping[str, Any], objective
                          ) -> dict[str, jax.Array]:
  """z_features_hsic: z_features_cka of E_phi's output and each label's
  f(y, c) held fixed (out['f_parts']), when objective.z_features_hsic > 0;
  else {}. Trains only E_phi: z leaves the label's look to c."""
  if not objective.get('z_features_hsic', 0.0):
    return {}
  return {'z_features_hsic': z_features_cka(
      _encoder_output(out), jax.lax.stop_gradient(out['f_parts']))}


def other_labels_cka(c: Sequence[jax.Array], y: jax.Array) -> jax.Array:
  """How much each label's c knows of the other labels: label_cka of c_l
  (one position) and the indicators of every label but l, summed over l;
  0 for one label. A label's features are not another label's: without it
  the smile's c may carry the glasses once z does not (docs/results.md).
  c: one (B, n_l) array per label; y: (B, L, 2)."""
  total = jnp.zeros((), jnp.float32)
  for l, c_l in enumerate(c):
    others = jnp.concatenate([y[:, :l], y[:, l + 1:]], axis=1)
    if others.shape[1]:
      total = total + label_cka(c_l, others)
  return total


def c_labels_hsic_terms(out: Mapping[str, Any], objective
                        ) -> dict[str, jax.Array]:
  """c_labels_hsic: other_labels_cka of out['c'] and the labels the pass
  used (held fixed), when objective.c_labels_hsic > 0; else {}. Trains only
  C_phi."""
  if not objective.get('c_labels_hsic', 0.0):
    return {}
  return {'c_labels_hsic': other_labels_cka(
      out['c'], jax.lax.stop_gradient(out['y']))}


def label_regions(x: jax.Array, y1: jax.Array,
                  weights: jax.Array | None = None) -> jax.Array:
  """Where each label acts, from one batch: the absolute difference of the
  mean image of the examples with the label and of those without it, summed
  over channels and divided by its maximum, (L, H, W) in [0, 1] (0 for a
  label that the batch has only one value of). x: (B, H, W, C); y1: (B, L),
  the probability (or indicator) of y = 1; weights (B, L), optional: how
  much each example counts for each label (the labelled mask: 0 leaves an
  unlabelled example out). On aligned images (faces, chest X-rays) this is
  the label's place: the frames' band for glasses, the heart's outline for
  cardiomegaly."""
  x = x.astype(jnp.float32)
  w1 = y1.astype(jnp.float32)
  w0 = 1.0 - w1
  if weights is not None:
    w1, w0 = w1 * weights, w0 * weights
  def mean(w):
    return (jnp.einsum('bl,bhwc->lhwc', w, x)
            / jnp.maximum(jnp.sum(w, 0), 1e-6)[:, None, None, None])
  both = (jnp.sum(w1, 0) > 0.5) & (jnp.sum(w0, 0) > 0.5)   # (L,)
  diff = jnp.sum(jnp.abs(mean(w1) - mean(w0)), -1)          # (L, H, W)
  top = jnp.max(diff, axis=(1, 2), keepdims=True)
  return jnp.where(both[:, None, None], diff / jnp.maximum(top, 1e-12), 0.0)


def latent_regions(x: jax.Array, y1: jax.Array, grid: int,
                   threshold: float = 0.5,
                   weights: jax.Array | None = None) -> jax.Array:
  """Where each label acts on a latent grid of grid x grid positions, from
  one batch: (L, grid, grid) booleans. label_regions is averaged over each
  position's patch of pixels; its median over the positions (what every
  position differs by, such as the batch's spread of background colours) is
  subtracted and the rest divided by its maximum; the positions at or above
  `threshold` are the region. No position for a label that the batch has
  only one value of. x: (B, H, W, C) with H and W multiples of grid; y1:
  (B, L) and weights as in label_regions."""
  regions = label_regions(x, y1, weights)
  num_labels, height, width = regions.shape
  if height % grid or width % grid:
    raise ValueError(f'latent_regions: the image ({height} x {width}) is not '
                     f'a whole number of {grid} x {grid} patches.')
  pooled = regions.reshape(num_labels, grid, height // grid, grid,
                           width // grid).mean((2, 4))
  flat = pooled.reshape(num_labels, -1)
  low = jnp.median(flat, axis=-1)[:, None, None]
  high = jnp.max(flat, axis=-1)[:, None, None]
  spread = high - low
  return (spread > 1e-6) & (pooled - low >= threshold * spread)


def c_locality(own: jax.Array, mean: jax.Array, regions: jax.Array,
               gate: jax.Array) -> jax.Array:
  """The share of what c changes in the image that lies outside the
  region of its label: sum of (own - mean)^2 (1 - mask) over the sum of
  (own - mean)^2, mask_i = max over labels l of gate_il regions_l (an
  example's allowed region: where the labels whose f(y, c) it uses act).

  own, mean: (B, H, W, C), the decodes with each example's c and with the
  batch's mean c; regions: (L, H, W) (label_regions, held fixed); gate:
  (B, L). 0 when c changes only pixels inside the region, 1 when only
  outside; the same whatever the size of c's effect, so that it cannot be
  met by c doing nothing."""
  sq = jnp.sum(jnp.square(own.astype(jnp.float32)
                          - mean.astype(jnp.float32)), -1)    # (B, H, W)
  mask = jnp.max(gate[:, :, None, None] * regions[None], axis=1)
  outside = jnp.sum(sq * (1.0 - jax.lax.stop_gradient(mask)))
  return outside / (jnp.sum(sq) + 1e-8 * sq.size)


def c_locality_terms(out: Mapping[str, Any]) -> dict[str, jax.Array]:
  """c_locality of a pass that decoded with the batch's mean c (models'
  locality_outputs); {} for a pass without them. Trains D_theta and C_phi:
  c may change only where its label acts."""
  if 'locality_own' not in out:
    return {}
  sg = jax.lax.stop_gradient
  regions = label_regions(sg(out['locality_x']), sg(out['locality_y']))
  return {'c_locality': c_locality(out['locality_own'], out['locality_mean'],
                                   regions, sg(out['locality_gate']))}


# Side in pixels of the patches over which region_reconstruction finds where
# a label acts (a latent position's patch at the benchmark's 32 px, N_z 8).
REGION_PATCH = 4


def label_region_masks(x: jax.Array, y1: jax.Array, patch: int = REGION_PATCH,
                       what: str = 'label_region_masks',
                       weights: jax.Array | None = None,
                       threshold: float = 0.5) -> jax.Array:
  """The pixels where each label acts, from one batch: (L, H, W) booleans,
  latent_regions (at `threshold`) on a grid of patch x patch pixel patches
  (no pixel for a label that the batch has only one value of). x:
  (B, H, W, C), square, H a multiple of `patch`; y1: (B, L), the probability
  (or indicator) of y = 1; weights as in label_regions. `what` names the
  caller in the error."""
  height, width = x.shape[1:3]
  if height % patch or width % patch or height != width:
    raise ValueError(f'{what}: the image ({height} x {width}) is not a '
                     f'square of whole {patch} x {patch} patches.')
  regions = latent_regions(x, y1, height // patch, threshold,
                           weights=weights)                       # (L, N, N)
  return jnp.repeat(jnp.repeat(regions, patch, 1), patch, 2)     # (L, H, W)


def region_mask(x: jax.Array, y1: jax.Array, patch: int = REGION_PATCH,
                what: str = 'region_mask',
                weights: jax.Array | None = None,
                threshold: float = 0.5) -> jax.Array:
  """The pixels where any label acts, from one batch: (H, W) booleans, the
  union over labels of label_region_masks (arguments as there)."""
  return jnp.any(label_region_masks(x, y1, patch, what, weights, threshold),
                 axis=0)


def hidden_from_others(regions: jax.Array) -> jax.Array:
  """What C_phi does not show each label with model.feature_masking:
  (L, H, W) booleans, the pixels of the other labels' regions that are not
  in the label's own. regions: (L, H, W) booleans (label_region_masks). A
  single label hides nothing."""
  regions = regions.astype(bool)
  counts = jnp.sum(regions, axis=0, dtype=jnp.int32)             # (H, W)
  others = counts[None] - regions.astype(jnp.int32) > 0          # (L, H, W)
  return others & ~regions


def region_reconstruction(x: jax.Array, x_hat: jax.Array, y1: jax.Array,
                          patch: int = REGION_PATCH) -> jax.Array:
  """The squared error inside the regions where the labels act, averaged
  over their pixels and channels: region_mask of the batch (held fixed,
  booleans). 0 when the batch has no region. x, x_hat: (B, H, W, C) with H
  and W multiples of `patch`; y1: (B, L), the probability (or indicator) of
  y = 1."""
  sq = jnp.square(x.astype(jnp.float32) - x_hat.astype(jnp.float32))
  return _region_average(sq, x, y1, patch, 'region_reconstruction')


def _region_average(sq: jax.Array, x: jax.Array, y1: jax.Array, patch: int,
                    what: str) -> jax.Array:
  """The mean of sq (B, H, W, C) over the pixels of region_mask(x, y1)
  (held fixed), the examples and the channels; 0 when there is none."""
  mask = region_mask(x, y1, patch, what)
  mask = mask.astype(jnp.float32)[None, :, :, None]
  count = jnp.sum(mask) * sq.shape[0] * sq.shape[-1]
  return jnp.sum(sq * mask) / jnp.maximum(count, 1.0)


def region_reconstruction_terms(batch: Mapping[str, jax.Array],
                                out: Mapping[str, Any], objective
                                ) -> dict[str, jax.Array]:
  """region_reconstruction of a pass's x_hat, the regions read from the
  batch's images and the labels the pass used (held fixed), when
  objective.region_reconstruction > 0; else {}. It trains what the
  reconstruction trains, with the weight put where the labels act."""
  if not objective.get('region_reconstruction', 0.0):
    return {}
  sg = jax.lax.stop_gradient
  return {'region_reconstruction': region_reconstruction(
      batch['image'], out['x_hat'], sg(out['y'][..., 1]))}


def chroma(x: jax.Array) -> jax.Array:
  """The colour of each pixel without its brightness: the channels minus
  their mean (the two chrominance axes of RGB, as Cb and Cr are of
  YCbCr, up to a rotation). x: (..., C); 0 for a single channel."""
  x = x.astype(jnp.float32)
  return x - jnp.mean(x, axis=-1, keepdims=True)


def region_chroma(x: jax.Array, x_hat: jax.Array, y1: jax.Array,
                  patch: int = REGION_PATCH) -> jax.Array:
  """The squared error of the chroma inside the regions where the labels
  act, averaged over their pixels, the examples and the channels:
  region_mask of the batch (held fixed, booleans), as region_reconstruction,
  with the brightness taken out so that a grey drawing of a coloured label
  costs what its colour is worth. 0 when the batch has no region or the
  images have one channel. x, x_hat: (B, H, W, C) with H and W multiples of
  `patch`; y1: (B, L), the probability (or indicator) of y = 1."""
  sq = jnp.square(chroma(x) - chroma(x_hat))
  return _region_average(sq, x, y1, patch, 'region_chroma')


def region_chroma_terms(batch: Mapping[str, jax.Array],
                        out: Mapping[str, Any], objective
                        ) -> dict[str, jax.Array]:
  """region_chroma of a pass's x_hat, the regions read from the batch's
  images and the labels the pass used (held fixed), when
  objective.region_chroma > 0; else {}. It trains what the reconstruction
  trains, with the weight put on the labels' colour."""
  if not objective.get('region_chroma', 0.0):
    return {}
  sg = jax.lax.stop_gradient
  return {'region_chroma': region_chroma(
      batch['image'], out['x_hat'], sg(out['y'][..., 1]))}


def extension_terms(batch: Mapping[str, jax.Array], out: Mapping[str, Any],
                    objective) -> dict[str, jax.Array]:
  """The terms beyond the paper that a training pass `out` of `batch`
  supports (invariance_terms, z_mmd_terms, z_hsic_terms, c_hsic_terms,
  c_labels_hsic_terms, z_features_hsic_terms, swap_consistency_terms,
  c_locality_terms, region_reconstruction_terms, region_chroma_terms), for
  a model's loss_terms;
  {} when every extension is off."""
  return {**invariance_terms(out), **z_mmd_terms(out, objective),
          **z_hsic_terms(out, objective), **c_hsic_terms(out, objective),
          **c_labels_hsic_terms(out, objective),
          **z_features_hsic_terms(out, objective),
          **swap_consistency_terms(out), **c_locality_terms(out),
          **region_reconstruction_terms(batch, out, objective),
          **region_chroma_terms(batch, out, objective)}
