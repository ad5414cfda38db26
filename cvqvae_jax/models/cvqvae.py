"""CVQVAE (paper 2.1): E_phi, C_phi, the codebook, the tokens and D_theta.

Shapes: images are (B, S, S, C) in [-1, 1]; y is (B, L, 2) (one-hot or
relaxed) for L labels; z_e and z_q are (B, N_z, N_z, D).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvqvae_jax import metrics
from cvqvae_jax import objectives
from cvqvae_jax.models import layers
from cvqvae_jax.models import sampling

POSTERIORS = ('softmax', 'argmin')


class Encoder(nn.Module):
  """E_phi: x and the y-tokens -> a (B, N, N, out_features) map.

  Five residual blocks; the first log2(S / N) downsample. Each block's input
  is concatenated with one token channel per label at its resolution.
  Computes in `dtype`; z_e is returned in float32 (the codebook distances
  and Eq. 4's softmax are float32 whatever `dtype` is).
  """
  widths: Sequence[int]
  latent_grid: int
  out_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    size = x.shape[1]
    num_down = layers.num_resamplings(size, self.latent_grid, 'encoder')
    if num_down > len(self.widths):
      raise ValueError(
          f'encoder: {len(self.widths)} blocks cannot reduce {size} px to '
          f'N_z = {self.latent_grid}.')
    h, res = x, size
    for i, width in enumerate(self.widths):
      tokens = layers.LabelTokens((res, res), name=f'tokens_{i}')(y)
      h = jnp.concatenate([h, tokens.astype(h.dtype)], axis=-1)
      down = i < num_down
      h = layers.ResBlock(width, 'down' if down else 'none', self.dtype,
                          name=f'block_{i}')(h)
      res = res // 2 if down else res
    h = layers.leaky_relu(h)
    z_e = nn.Conv(self.out_features, (1, 1), dtype=self.dtype,
                  name='to_latent')(h)
    return z_e.astype(jnp.float32)


class FeatureNet(nn.Module):
  """C_phi: x -> per label, the logits of q(y|x) and the features c.

  Five residual blocks down to 4x4, then one dense layer.
  Returns (logits (B, L, 2), c: tuple of L arrays (B, n_l)), in float32
  whatever the computation `dtype` is.
  """
  widths: Sequence[int]
  feature_sizes: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    num_down = layers.num_resamplings(x.shape[1], 4, 'feature net')
    if num_down > len(self.widths):
      raise ValueError(f'feature net: {len(self.widths)} blocks cannot reduce '
                       f'{x.shape[1]} px to 4x4.')
    h = x
    for i, width in enumerate(self.widths):
      h = layers.ResBlock(width, 'down' if i < num_down else 'none',
                          self.dtype, name=f'block_{i}')(h)
    h = layers.leaky_relu(h).reshape(x.shape[0], -1)
    num_labels = len(self.feature_sizes)
    out = nn.Dense(2 * num_labels + sum(self.feature_sizes), dtype=self.dtype,
                   name='head')(h).astype(jnp.float32)
    logits = out[:, :2 * num_labels].reshape(-1, num_labels, 2)
    c, offset = [], 2 * num_labels
    for n in self.feature_sizes:
      c.append(out[:, offset:offset + n])
      offset += n
    return logits, tuple(c)


CODEBOOK_INITS = ('normal', 'uniform', 'data')


class Codebook(nn.Module):
  """The embedding space: K vectors e_k in R^D (paper 2.1, [18]).

  init_method: 'normal' draws e_k ~ N(0, init_scale^2 I) (torch.nn.Embedding's
  default at scale 1); 'uniform' is VQ-VAE's U(-1/K, 1/K), under which
  q(z|x,y) starts out uniform; 'data' starts as 'uniform' here and is
  replaced by encoder outputs of a training batch before the first step
  (CVQVAE.init_from_batch).
  """
  num_codes: int
  code_dim: int
  init_method: str = 'normal'
  init_scale: float = 1.0

  def setup(self):
    if self.init_method not in CODEBOOK_INITS:
      raise ValueError(f'codebook init must be one of {CODEBOOK_INITS}.')
    bound = 1.0 / self.num_codes
    initializer = (nn.initializers.normal(self.init_scale)
                   if self.init_method == 'normal' else
                   lambda key, shape: jax.random.uniform(
                       key, shape, jnp.float32, -bound, bound))
    self.embedding = self.param('embedding', initializer,
                                (self.num_codes, self.code_dim))

  def logits(self, z_e: jax.Array) -> jax.Array:
    """-||z_e - e_k|| (the Euclidean norm, Eq. 4): (..., D) -> (..., K)."""
    e = self.embedding
    d2 = (jnp.sum(jnp.square(z_e), -1, keepdims=True)
          - 2.0 * z_e @ e.T + jnp.sum(jnp.square(e), -1))
    # The floor keeps the sqrt's gradient finite when z_e sits on a code.
    return -jnp.sqrt(jnp.maximum(d2, 1e-10))

  def posterior(self, z_e: jax.Array, scale: float,
                rng: jax.Array | None = None):
    """Eq. 4 and one sample of it, at every latent position.

    q(z_ij = k | x, y) = softmax_k(-s ||z_e,ij - e_k||), s = `scale` (the
    paper's s = 1; docs/model.md). Returns (logits, perturbed, index):
    `logits` (..., K) of q; with `rng`, a sample of q by the Gumbel-max
    trick: perturbed = logits + g with g_k ~ Gumbel(0, 1) i.i.d., and
    index = argmax_k perturbed is distributed exactly as q (Gumbel 1954;
    the relaxed version softmax(perturbed / tau) is the Gumbel-softmax of
    [19]). Without `rng`, perturbed = logits and index is the most likely
    code (test time).
    """
    logits = scale * self.logits(z_e)
    perturbed = logits if rng is None else logits + sampling.gumbel_noise(
        rng, logits.shape, logits.dtype)
    return logits, perturbed, jnp.argmax(perturbed, axis=-1)

  def lookup(self, index: jax.Array) -> jax.Array:
    return jnp.take(self.embedding, index, axis=0)

  def __call__(self, weights: jax.Array) -> jax.Array:
    """Mixture sum_k w_k e_k for (relaxed) one-hot weights (..., K)."""
    return weights @ self.embedding


class Decoder(nn.Module):
  """D_theta: [flatten(z), scalar tokens, f(y, c)] -> image.

  One dense layer to 4x4 x widths[0], then five residual blocks with y-tokens
  (the last log2(S / 4) upsample, so that below 128 px the extra blocks run
  at 4x4, where they are cheap), a 1x1 conv and tanh. With `style`, the
  blocks use AdaIN (CGVAE's decoder). Computes in `dtype`; the image is
  returned in float32.
  """
  widths: Sequence[int]
  image_size: int
  channels: int
  dtype: Any = jnp.float32
  # f(y, c) also modulates every block's output (docs/model.md,
  # "Extensions"): h * (1 + gamma(f)) + beta(f), zero-initialised.
  feature_film: bool = False

  @nn.compact
  def __call__(self, z_flat: jax.Array, y: jax.Array, f: jax.Array,
               style: jax.Array | None = None) -> jax.Array:
    num_up = layers.num_resamplings(self.image_size, 4, 'decoder')
    if num_up > len(self.widths):
      raise ValueError(f'decoder: {len(self.widths)} blocks cannot grow 4x4 '
                       f'to {self.image_size} px.')
    scalar = layers.LabelTokens((), name='scalar_tokens')(y)
    h = jnp.concatenate([z_flat, scalar.astype(z_flat.dtype), f], axis=-1)
    h = nn.Dense(16 * self.widths[0], dtype=self.dtype, name='dense')(h)
    h = h.reshape(-1, 4, 4, self.widths[0])
    res = 4
    for i, width in enumerate(self.widths):
      tokens = layers.LabelTokens((res, res), name=f'tokens_{i}')(y)
      h = jnp.concatenate([h, tokens.astype(h.dtype)], axis=-1)
      up = i >= len(self.widths) - num_up
      h = layers.ResBlock(width, 'up' if up else 'none', self.dtype,
                          name=f'block_{i}')(h, style)
      if self.feature_film:
        h = layers.FiLM(self.dtype, name=f'film_{i}')(h, f)
      res = res * 2 if up else res
    h = layers.leaky_relu(h)
    h = nn.Conv(self.channels, (1, 1), dtype=self.dtype, name='to_image')(h)
    return jnp.tanh(h.astype(jnp.float32))


# The parameter groups that two-step training (paper 2.4, two_step.py) moves
# from stage one to stage two, as patterns of the submodule names given here:
# C_phi (ConditionalVAE.feature_net), E_phi's and D_theta's image tokens
# (`tokens_i`, Encoder and Decoder) and D_theta's scalar token
# (`scalar_tokens`). Every model names them so, so that the same paths exist
# in both stages.
TRANSFERRED = ('feature_net', 'tokens_*', 'scalar_tokens')


class ConditionalVAE(nn.Module):
  """What every model of paper 2.4 shares: C_phi (q(y|x) and c), the
  semi-supervised y, the feature combination f(y, c) and D_theta with tokens.

  What the rest of the library uses of a model is declared in
  models/contract.py (`Model`, `output_shapes`).

  Subclasses (CVQVAE, cgvae.CGVAE) add the latent z and its posterior; they
  must name their submodules `feature_net`, `encoder` and `decoder`, so that
  C_phi and the tokens (TRANSFERRED) have the same parameter paths in every
  model (the two-step training of paper 2.4 moves them from one model to
  another).
  Attributes mirror `config.model`; `feature_kinds` holds one of
  layers.FEATURE_KINDS per label (models.feature_kinds; their count is the
  number of labels L).

  `dtype` is the computation dtype of E_phi, C_phi and D_theta (config.dtype:
  bfloat16 for mixed precision). Their outputs (z_e, the logits of q(y|x),
  c, x_hat), the parameters and every loss stay float32.
  """
  image_size: int
  channels: int
  feature_kinds: Sequence[str]
  encoder_widths: Sequence[int]
  feature_widths: Sequence[int]
  decoder_widths: Sequence[int]
  latent_grid: int = 8          # N_z
  code_dim: int = 16            # D
  num_features: int = 16        # N_c
  use_features: bool = True     # False for variants A and B
  dtype: Any = jnp.float32      # computation dtype of E, C and D
  # Width of the label adversary on z (docs/model.md, "Extensions"); 0: none.
  z_adversary_width: int = 0
  # Swapped decodes re-encoded in every train pass (docs/model.md,
  # "Extensions"): the inputs of the swap-consistency terms.
  swap_consistency: bool = False
  # f(y, c) modulates every decoder block (FiLM; docs/model.md, "Extensions").
  feature_film: bool = False
  # In training, each label's decoder tokens are replaced by the mean of its
  # two tokens with this probability per example (docs/model.md,
  # "Extensions"): the decoder must then draw the label from f(y, c).
  token_dropout: float = 0.0
  # Train passes also decode with each label's c replaced by its batch mean,
  # for objective.c_locality: what c changes must lie where the label acts
  # (docs/model.md, "Extensions").
  feature_locality: bool = False
  # In training, an example's z at the latent positions where a label acts
  # (read from the batch: objectives.latent_regions) is set to 0 with this
  # probability per example and label (docs/model.md, "Extensions"): the
  # decoder must then draw the label's look there from y and f(y, c).
  # Categorical z only: a z without a spatial grid (the Gaussian ones) is an
  # error (config_checks; two_step turns it off in a Gaussian stage one).
  region_masking: float = 0.0
  # E_phi reads x with the pixels where the labels act set to 0, in training
  # and at test (docs/model.md, "Extensions"): z cannot see the label's look,
  # so the decoder must draw it there from y and f(y, c). The pixels are the
  # parameter 'encoder_region' (H, W), found from labelled training examples
  # before the first step (init_from_batch) and never trained.
  encoder_masking: bool = False
  # Each label's q(y|x) and c come from C_phi reading x with the other
  # labels' regions (outside its own) set to 0, in training and at test
  # (docs/model.md, "Extensions"): a label's c cannot carry what another
  # label draws. The regions are the parameter 'feature_regions' (L, H, W),
  # found as encoder_masking's, never trained; C_phi runs once per label.
  feature_masking: bool = False
  # Training examples that init_from_batch reads for the masking options'
  # region (the labelled ones among them find it), in whole batches: more
  # examples, a region less dependent on which ones were read.
  region_examples: int = 512
  # The share of its largest difference at which a patch joins a label's
  # region (objectives.latent_regions' threshold): lower, a wider region.
  region_threshold: float = 0.5

  @property
  def feature_sizes(self) -> tuple[int, ...]:
    if not self.use_features:
      return tuple(0 for _ in self.feature_kinds)
    return tuple(layers.feature_size(k, self.num_features)
                 for k in self.feature_kinds)

  def _feature_net(self) -> FeatureNet:
    return FeatureNet(self.feature_widths, self.feature_sizes, self.dtype)

  def _decoder(self) -> Decoder:
    return Decoder(self.decoder_widths, self.image_size, self.channels,
                   self.dtype, self.feature_film)

  def _setup_encoder_region(self):
    """The 'encoder_region' parameter of encoder_masking (1 = hidden from
    E_phi) and the 'feature_regions' of feature_masking (1 where each label
    acts), zero until init_from_batch sets them; for every model's setup."""
    if self.encoder_masking:
      self.encoder_region = self.param(
          'encoder_region', nn.initializers.zeros,
          (self.image_size, self.image_size))
    if self.feature_masking:
      self.feature_regions = self.param(
          'feature_regions', nn.initializers.zeros,
          (len(self.feature_kinds), self.image_size, self.image_size))

  def encoder_input(self, x: jax.Array) -> jax.Array:
    """What E_phi reads of x (B, H, W, C): x itself, or with encoder_masking
    x with the pixels of 'encoder_region' set to 0. The region is held
    fixed (stop_gradient, and read as booleans), so that no optimizer moves
    it."""
    if not self.encoder_masking:
      return x
    hidden = jax.lax.stop_gradient(self.encoder_region) > 0.5
    return jnp.where(hidden[None, :, :, None], jnp.zeros((), x.dtype), x)

  def region_of(self, batch: dict[str, jax.Array]) -> jax.Array:
    """encoder_masking's region from training examples: (H, W) float32, 1
    where any label acts (objectives.region_mask of the labelled examples,
    each label from those where it is known; unlabelled ones left out)."""
    return objectives.region_mask(
        batch['image'], batch['label'], what='encoder_masking',
        weights=batch['labelled'].astype(jnp.float32),
        threshold=self.region_threshold).astype(jnp.float32)

  def label_regions_of(self, batch: dict[str, jax.Array]) -> jax.Array:
    """feature_masking's regions from training examples: (L, H, W)
    float32, 1 where each label acts (as region_of, label by label)."""
    return objectives.label_region_masks(
        batch['image'], batch['label'], what='feature_masking',
        weights=batch['labelled'].astype(jnp.float32),
        threshold=self.region_threshold).astype(jnp.float32)

  def _z_adversary(self):
    if not self.z_adversary_width:
      return None
    return layers.LabelAdversary(self.z_adversary_width,
                                 len(self.feature_kinds), name='z_adversary')

  def adversary_outputs(self, z: jax.Array) -> dict[str, jax.Array]:
    """The label adversary on z (train passes with z_adversary_width > 0):
    'adversary_fit', its logits on sg(z) (trains the adversary), and
    'adversary_frozen', its logits on z with its parameters held fixed
    (trains what made z)."""
    if self.z_adversary is None:
      return {}
    fit = self.z_adversary(jax.lax.stop_gradient(z))
    return {'adversary_fit': fit,
            'adversary_frozen': layers.frozen(self.z_adversary)(z)}

  def reencode(self, x: jax.Array, y: jax.Array, frozen: bool = True
               ) -> jax.Array:
    """What the swap-consistency terms compare of z: E_phi's continuous
    output for x and y, with E_phi's parameters held fixed (`frozen`) or
    trained."""
    raise NotImplementedError

  def swap_outputs(self, z: jax.Array, y: jax.Array, c, z_target: jax.Array
                   ) -> dict[str, Any]:
    """The swapped decode of every example and what it reads back.

    Example i keeps its z and takes the labels and features of example
    i - 1 of the batch (its donor): fake = D(z_i, y_{i-1}, c_{i-1}). C_phi
    and E_phi, their parameters held fixed, re-encode the fake, so that the
    terms computed from it (objectives.swap_consistency_terms) train the
    decoder (and, through its inputs, what made z and c) to draw the donor's
    label and features on the base's face, not C_phi or E_phi to read
    something else. 'swap_z_invariant_read' is the other way round: E_phi,
    trained, re-encodes the fake held fixed, so that its term
    (swap_z_invariance) trains only E_phi to give the base's z whatever
    label and features were drawn on it.
    """
    if not self.swap_consistency:
      return {}
    y_donor = jnp.roll(y, 1, axis=0)
    c_donor = tuple(jnp.roll(c_l, 1, axis=0) for c_l in c)
    fake = self.decode(z, y_donor, c_donor)
    logits_read, c_read = layers.frozen(self.feature_net)(fake)
    return {'swap_y': y_donor,
            'swap_f': self.features(y_donor, c_donor),
            'swap_f_read': self.features(y_donor, c_read),
            'swap_logits_read': logits_read,
            'swap_z_read': self.reencode(fake, y_donor),
            'swap_z_invariant_read': self.reencode(
                jax.lax.stop_gradient(fake), jax.lax.stop_gradient(y_donor),
                frozen=False),
            'swap_z_target': z_target}

  def locality_outputs(self, x: jax.Array, z: jax.Array, y: jax.Array,
                       c: Sequence[jax.Array]) -> dict[str, Any]:
    """What objectives.c_locality compares (train passes with
    feature_locality): 'locality_own', D(sg z, y, c), and 'locality_mean',
    D(sg z, y, c-bar), every label's c replaced by its mean over the batch's
    examples where f(y, c) uses it (held fixed), so that their difference is
    what each example's own c changes in the image; 'locality_x' and
    'locality_y' (x and the pass's y, held fixed), from which the term finds
    the region where each label acts; 'locality_gate' (B, L): where an
    example's f(y, c) of a label depends on c at all (y for 'presence', 1
    for 'both'). {} without feature_locality."""
    if not self.feature_locality:
      return {}
    sg = jax.lax.stop_gradient
    z, y1 = sg(z), sg(y[..., 1]).astype(jnp.float32)
    means, gates = [], []
    for l, (c_l, kind) in enumerate(zip(c, self.feature_kinds)):
      w = y1[:, l:l + 1]
      if kind == 'presence':
        weights, gate = w, y1[:, l]
      else:  # 'both': c = [c0, c1], c0 used where y = 0, c1 where y = 1.
        half = c_l.shape[-1] // 2
        weights = jnp.concatenate([jnp.repeat(1 - w, half, -1),
                                   jnp.repeat(w, half, -1)], -1)
        gate = jnp.ones_like(y1[:, l])
      mean = (jnp.sum(weights * c_l, 0, keepdims=True)
              / jnp.maximum(jnp.sum(weights, 0, keepdims=True), 1e-6))
      means.append(jnp.broadcast_to(sg(mean), c_l.shape).astype(c_l.dtype))
      gates.append(gate)
    return {'locality_own': self.decode(z, y, c),
            'locality_mean': self.decode(z, y, tuple(means)),
            'locality_x': sg(x), 'locality_y': y1,
            'locality_gate': jnp.stack(gates, -1)}

  def decoder_style(self, z_flat: jax.Array) -> jax.Array | None:
    """The AdaIN style vector of D_theta's blocks; None: no AdaIN."""
    del z_flat
    return None

  def classify(self, x: jax.Array):
    """C_phi: (logits of q(y|x) (B, L, 2), c tuple). With feature_masking
    and several labels, label l's logits and c are C_phi's on x with
    objectives.hidden_from_others of 'feature_regions' (held fixed) set to
    0: C_phi runs on the L masked copies of the batch at once."""
    num_labels = len(self.feature_kinds)
    if not self.feature_masking or num_labels < 2:
      return self.feature_net(x)
    hidden = objectives.hidden_from_others(
        jax.lax.stop_gradient(self.feature_regions) > 0.5)     # (L, H, W)
    copies = jnp.where(hidden[:, None, :, :, None], jnp.zeros((), x.dtype),
                       x[None])                                # (L, B, ...)
    logits, c = self.feature_net(copies.reshape(-1, *x.shape[1:]))
    batch = x.shape[0]
    logits = logits.reshape(num_labels, batch, num_labels, 2)
    own = jnp.stack([logits[l, :, l] for l in range(num_labels)], axis=1)
    return own, tuple(c_l.reshape(num_labels, batch, -1)[l]
                      for l, c_l in enumerate(c))

  def feature_parts(self, y: jax.Array, c: Sequence[jax.Array]
                    ) -> tuple[jax.Array, ...]:
    """f(y, c) of each label: a tuple of L arrays (B, n_l)."""
    return tuple(layers.combine_features(y[:, l, 1], c_l, kind)
                 for l, (c_l, kind) in enumerate(zip(c, self.feature_kinds)))

  def features(self, y: jax.Array, c: Sequence[jax.Array]) -> jax.Array:
    """f(y, c) of every label, concatenated: (B, sum n_l)."""
    return jnp.concatenate(self.feature_parts(y, c), axis=-1)

  def decode(self, z: jax.Array, y: jax.Array, c: Sequence[jax.Array],
             token_y: jax.Array | None = None) -> jax.Array:
    """D_theta(z, y, f(y, c)) -> (B, S, S, C); z is z_q for the categorical
    models, the Gaussian sample (or mean) for the Gaussian ones. token_y,
    when given, selects the decoder's tokens in place of y (train_decode)."""
    z_flat = z.reshape(z.shape[0], -1)
    return self.decoder(z_flat, y if token_y is None else token_y,
                        self.features(y, c), self.decoder_style(z_flat))

  def train_decode(self, z: jax.Array, y: jax.Array,
                   c: Sequence[jax.Array], x: jax.Array | None = None
                   ) -> jax.Array:
    """decode() of a training pass ('sample' rng). With token_dropout > 0,
    each label's decoder tokens of each example are, with that probability,
    the mean of its two tokens (y = (1/2, 1/2)) and carry nothing of the
    label; f(y, c) keeps the label. With region_masking > 0, each label's
    region in z (B, N, N, D) (objectives.latent_regions of x and y: booleans,
    so no gradient) is, with that probability per example, set to 0: what
    the decoder draws there comes from y and f(y, c) alone."""
    token_y = None
    if self.token_dropout:
      drop = jax.random.bernoulli(self.make_rng('sample'), self.token_dropout,
                                  y.shape[:2])[..., None]
      token_y = jnp.where(drop, 0.5, y).astype(y.dtype)
    if self.region_masking:
      if x is None:
        raise ValueError('region_masking needs the images x of the pass.')
      if z.ndim != 4:
        raise ValueError(f'region_masking needs a z with a spatial grid '
                         f'(B, N, N, D), got shape {z.shape}.')
      regions = objectives.latent_regions(x, y[..., 1], z.shape[1])
      pick = jax.random.bernoulli(self.make_rng('sample'),
                                  self.region_masking, y.shape[:2])  # (B, L)
      mask = jnp.any(pick[:, :, None, None] & regions[None], axis=1)
      z = jnp.where(mask[..., None], jnp.zeros((), z.dtype), z)
    return self.decode(z, y, c, token_y)

  def init_from_batch(self, params, batch: dict[str, jax.Array],
                      rng: jax.Array):
    """Parameters that depend on data, set from training examples before
    the first step (not again on resume): returns the new params. The train
    loop reads init_batches(batch size) batches, concatenated, and calls
    this only when `initialises_from_data`. Here: encoder_masking's
    'encoder_region' (region_of the batch) and feature_masking's
    'feature_regions' (label_regions_of); otherwise nothing changes."""
    del rng
    if self.encoder_masking:
      params = {**params, 'encoder_region': self.region_of(batch)}
    if self.feature_masking:
      params = {**params, 'feature_regions': self.label_regions_of(batch)}
    return params

  @property
  def _masks_regions(self) -> bool:
    return self.encoder_masking or self.feature_masking

  @property
  def initialises_from_data(self) -> bool:
    """Whether init_from_batch uses its batch."""
    return self._masks_regions

  def init_batches(self, batch_size: int) -> int:
    """How many training batches of `batch_size` init_from_batch reads,
    concatenated: 1, or with encoder_masking or feature_masking enough for
    region_examples examples."""
    if not self._masks_regions:
      return 1
    return max(1, -(-self.region_examples // batch_size))

  # Whether loss_terms returns the bound itself as 'loss' (CCVAE) instead of
  # terms that objectives.TERMS weights and sums.
  own_bound = False

  def loss_terms(self, out: dict[str, Any], batch: dict[str, jax.Array],
                 objective) -> dict[str, jax.Array]:
    """The model's loss terms from the output of one training pass,
    unweighted, named as the rows of objectives.TERMS (other keys are logged
    diagnostics); objectives.complete weights them. train.loss_fn calls this
    for every model; each model defines its own (its latent and its loss)."""
    raise NotImplementedError

  def sample_labels(self, logits_y: jax.Array, labels: jax.Array,
                    labelled: jax.Array, train: bool, y_temperature: Any,
                    dtype) -> jax.Array:
    """y of one pass, (B, L, 2) of `dtype`, from the logits of q(y|.): the
    true one-hot label where labelled, else a relaxed sample of q(y|.)
    ('sample' rng) in training; the most likely label at test."""
    if train:
      return sampling.semi_supervised_labels(
          self.make_rng('sample'), logits_y, labels, labelled, y_temperature)
    return jax.nn.one_hot(jnp.argmax(logits_y, -1), 2, dtype=dtype)

  def labels_and_features(self, x: jax.Array, labels: jax.Array,
                          labelled: jax.Array, train: bool,
                          y_temperature: Any):
    """(logits_y, c, y): C_phi's output and its y (sample_labels)."""
    logits_y, c = self.classify(x)
    return logits_y, c, self.sample_labels(logits_y, labels, labelled, train,
                                           y_temperature, x.dtype)


class CVQVAE(ConditionalVAE):
  """The categorical-latent model: variants A (posterior='argmin', no
  features), B (no features) and C/E (with features) of paper 2.4."""
  num_codes: int = 512          # K
  posterior: str = 'softmax'    # Eq. 4; 'argmin' is VQ-VAE's (variant A)
  straight_through: str = 'copy'
  codebook_init: str = 'normal'
  codebook_init_scale: float = 1.0
  # Which code the codebook and commitment terms pull towards: the 'sample'
  # that fed the decoder (z_q, paper 2.3) or the 'nearest' one ([18]).
  vq_target: str = 'nearest'
  # 1 / temperature of Eq. 4: q(z_ij = k) = softmax_k(-s ||z_e,ij - e_k||).
  # s = 1 is the paper's formula; docs/model.md says why the default is not.
  distance_scale: float = 1.0
  latent = 'categorical'

  def setup(self):
    if self.posterior not in POSTERIORS:
      raise ValueError(f'posterior must be one of {POSTERIORS}.')
    if self.straight_through not in sampling.STRAIGHT_THROUGH_MODES:
      raise ValueError(f'straight_through must be one of '
                       f'{sampling.STRAIGHT_THROUGH_MODES}.')
    if self.vq_target not in ('sample', 'nearest'):
      raise ValueError("vq_target must be 'sample' or 'nearest'.")
    self.feature_net = self._feature_net()
    self.encoder = Encoder(self.encoder_widths, self.latent_grid,
                           self.code_dim, self.dtype)
    self.codebook = Codebook(self.num_codes, self.code_dim,
                             self.codebook_init, self.codebook_init_scale)
    self.decoder = self._decoder()
    self.z_adversary = self._z_adversary()
    self._setup_encoder_region()

  def loss_terms(self, out, batch, objective):
    """Eq. 6 and paper 2.3 (objectives.py): the entropy KL of Eq. 4's
    q(z|x,y) and the VQ terms. Variant A's one-hot posterior has the
    constant KL N_z^2 log K, which trains nothing."""
    terms = objectives.shared_terms(batch, out)
    if self.posterior == 'argmin':
      terms['kl'] = objectives.constant_categorical_kl(
          math.prod(out['z_index'].shape[1:]), self.num_codes)
    else:
      terms['kl'] = objectives.categorical_kl_loss(out['z_logits'])
    terms['codebook'], terms['commitment'] = objectives.codebook_losses(
        out['z_e'], out['z_code'])
    terms['code_perplexity'] = metrics.code_perplexity(out['z_index'],
                                                       self.num_codes)
    terms.update(objectives.extension_terms(batch, out, objective))
    return terms

  @property
  def initialises_from_data(self) -> bool:
    return self.codebook_init == 'data' or self._masks_regions

  def init_from_batch(self, params, batch, rng):
    """The masking options' regions (ConditionalVAE.init_from_batch), then with
    codebook_init='data': e_k := z_e at K random latent positions of the
    batch (other parameters unchanged).

    Every code then starts where the encoder's outputs are: with N(0, 1)
    codes, whose norms (~4 in D = 16) dwarf the initial z_e (~0.6), every
    position's nearest code is the same one and the codebook collapses once
    Eq. 4 is sharp (docs/model.md). Needs B N_z^2 >= K.
    """
    params = super().init_from_batch(params, batch, rng)
    if self.codebook_init != 'data':
      return params
    sample_rng, pick_rng = jax.random.split(rng)
    out = self.apply({'params': params}, batch['image'], batch['label'],
                     batch['labelled'], train=True,
                     rngs={'sample': sample_rng})
    z_e = out['z_e'].reshape(-1, out['z_e'].shape[-1])
    if z_e.shape[0] < self.num_codes:
      raise ValueError(
          f"codebook_init='data' needs batch_size * N_z^2 = {z_e.shape[0]} "
          f'>= K = {self.num_codes} encoder outputs.')
    pick = jax.random.choice(pick_rng, z_e.shape[0], (self.num_codes,),
                             replace=False)
    codebook = dict(params['codebook'])
    codebook['embedding'] = z_e[pick].astype(codebook['embedding'].dtype)
    return {**params, 'codebook': codebook}

  def reencode(self, x, y, frozen=True):
    return (layers.frozen(self.encoder) if frozen else self.encoder)(
        self.encoder_input(x), y)

  def encode(self, x: jax.Array, y: jax.Array):
    """Most likely codes at test time: (z_index (B, N, N), z_q)."""
    _, _, z_index = self.codebook.posterior(
        self.encoder(self.encoder_input(x), y), self.distance_scale)
    return z_index, self.codebook.lookup(z_index)

  def posterior_codes(self, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """q(z|x, y) seen three ways, for diagnostics: the most likely code, a
    sample ('sample' rng) and the expected code sum_k q_k e_k, each
    (B, N, N, D), and the entropy of q at each position (B, N, N), nats.
    Variant A's one-hot posterior: all three are the nearest code, entropy
    0."""
    z_e = self.encoder(self.encoder_input(x), y)
    z_logits, _, most_likely = self.codebook.posterior(z_e,
                                                       self.distance_scale)
    nearest = self.codebook.lookup(most_likely)
    if self.posterior == 'argmin':
      return {'most_likely': nearest, 'sample': nearest, 'expected': nearest,
              'entropy': jnp.zeros(most_likely.shape, z_e.dtype)}
    _, _, sample = self.codebook.posterior(z_e, self.distance_scale,
                                           self.make_rng('sample'))
    entropy = math.log(self.num_codes) - objectives.categorical_kl_to_uniform(
        z_logits)
    return {'most_likely': nearest,
            'sample': self.codebook.lookup(sample),
            'expected': self.codebook(jax.nn.softmax(z_logits, -1)),
            'entropy': jnp.maximum(entropy, 0.0)}  # >= 0 after round-off

  def __call__(self, x: jax.Array, labels: jax.Array, labelled: jax.Array, *,
               train: bool, y_temperature: Any = 1.0,
               z_temperature: Any = 1.0) -> dict[str, Any]:
    """One pass. labels, labelled: (B, L). With train=True the 'sample' rng
    samples y for unlabelled examples and z from q(z|x,y); otherwise y is the
    most likely label and z the most likely code."""
    logits_y, c, y = self.labels_and_features(x, labels, labelled, train,
                                              y_temperature)

    z_e = self.encoder(self.encoder_input(x), y)
    # Variant A (VQ-VAE) takes the nearest code: no sample.
    sampled = train and self.posterior == 'softmax'
    z_logits, perturbed, z_index = self.codebook.posterior(
        z_e, self.distance_scale, self.make_rng('sample') if sampled else None)
    z_code = self.codebook.lookup(z_index)
    if self.straight_through == 'gumbel' and self.posterior == 'softmax':
      soft = jax.nn.softmax(perturbed / z_temperature, axis=-1)
      hard = jax.nn.one_hot(z_index, self.num_codes, dtype=soft.dtype)
      z_q = self.codebook(sampling.straight_through(hard, soft))
    else:  # VQ-VAE's copy: forward e[index], gradient of z_q goes to z_e.
      z_q = sampling.straight_through(z_code, z_e)

    if self.vq_target == 'nearest':
      z_code = self.codebook.lookup(jnp.argmax(z_logits, axis=-1))
    x_hat = (self.train_decode(z_q, y, c, x) if train
             else self.decode(z_q, y, c))
    extra = {}
    if train:
      extra = {**self.adversary_outputs(z_q),
               **self.swap_outputs(z_q, y, c, z_e),
               **self.locality_outputs(x, z_q, y, c),
               'f_parts': self.feature_parts(y, c)}
    return dict(logits_y=logits_y, c=c, y=y, z_e=z_e, z_logits=z_logits,
                z_index=z_index, z_code=z_code, z_q=z_q, x_hat=x_hat, **extra)

