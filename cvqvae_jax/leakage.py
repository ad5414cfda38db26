"""Leakage metrics: what a representation knows that it should not.

CVQVAE splits an image into a label y, its features c (from C_phi) and a
latent z. A swap works when c holds the label's features and nothing else,
and z holds everything else and not the label. Two probes measure the
failures:

* ``c_leakage``: how well the *nuisance* factors of the procedural benchmark
  (background, face position and size, colours, ... and the other labels'
  y and features) are predicted from what the decoder receives for one
  label, f(y, c). High values mean that a swap of this label also moves
  things it should not. ``c_own_factors_score`` is the positive control:
  how well the label's own feature factors are predicted (c should know
  them).
* ``z_leakage``: how well the label y is predicted from the test-time
  latent z (z_q flattened, or the Gaussian mean). High values mean that the
  decoder can read y from z and may ignore the swapped y.
  ``z_own_factors_score`` (procedural labels): how well z predicts the
  label's own feature factors, which a swap should take from c.

The probe (``probe_scores``) is ridge regression on standardised inputs
expanded into linear plus random Fourier features (an RBF kernel at two
bandwidths), the ridge chosen by exact leave-one-out error on the fit half,
scored on the other half of the held-out examples: held-out R^2 for
continuous targets, 2 BCA - 1 for binary ones, both clipped to [0, 1]
(0 = chance, 1 = perfect). Pure numpy, deterministic given the seed; its
cost is linear in the number of examples.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from cvqvae_jax.data import procedural

# Probes with fewer fit or score examples than this report None.
MIN_EXAMPLES = 4
# Random Fourier features per bandwidth; squared bandwidths 2 sigma^2 in
# units of the median squared distance between standardised fit inputs.
NUM_RANDOM_FEATURES = 128
BANDWIDTHS = (1.0, 0.25)
# Inputs wider than this enter the linear part through a seeded Gaussian
# random projection to this many dimensions.
MAX_LINEAR = 64
# Ridge strengths relative to the mean eigenvalue of the feature Gram matrix.
RIDGES = tuple(np.logspace(-4, 1, 6))

Target = tuple  # (values (n,) or (n, k), mask (n,) bool or None, kind)


def halves(n: int, seed: int) -> np.ndarray:
  """Seeded bool (n,): True for the fit half, False for the score half."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1EA4]))
  fit = np.zeros(n, bool)
  fit[rng.permutation(n)[:n // 2]] = True
  return fit


class _FeatureRidge:
  """Ridge regression on [linear, random Fourier] features of one fit set,
  with the ridge of the smallest exact leave-one-out error.

  The features approximate an RBF kernel at two bandwidths plus a linear
  kernel, so the probe catches smooth nonlinear relations; with at most
  MAX_LINEAR + 2 NUM_RANDOM_FEATURES features its cost is linear in the
  number of examples. Leave-one-out predictions are exact for ridge:
  t_i - (t_i - fitted_i) / (1 - h_ii), h the hat matrix's diagonal.
  """

  def __init__(self, x_fit: np.ndarray, seed: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF17]))
    self.mean = x_fit.mean(0)
    self.scale = x_fit.std(0) + 1e-6
    x = (x_fit - self.mean) / self.scale
    d = x.shape[1]
    self.project = None
    if d > MAX_LINEAR:
      self.project = rng.normal(size=(d, MAX_LINEAR)) / np.sqrt(d)
    sub = x[:200]
    sq = (np.sum(sub * sub, 1)[:, None] + np.sum(sub * sub, 1)[None, :]
          - 2.0 * sub @ sub.T)
    off = sq[~np.eye(len(sub), dtype=bool)]
    median = float(np.median(off)) if off.size else 1.0
    median = median if median > 1e-12 else 1.0
    self.w, self.b = [], []
    for bw in BANDWIDTHS:
      sigma = np.sqrt(bw * median / 2.0)
      self.w.append(rng.normal(size=(d, NUM_RANDOM_FEATURES)) / sigma)
      self.b.append(rng.uniform(0.0, 2 * np.pi, NUM_RANDOM_FEATURES))
    phi = self._raw_features(x)
    self.phi_mean = phi.mean(0)
    self.phi = phi - self.phi_mean          # (n_fit, p)
    gram = self.phi.T @ self.phi
    ridge = max(float(np.trace(gram)) / len(gram), 1e-12)
    # Per ridge: (G + r I)^-1 Phi^T (p, n_fit) and the hat diagonal h (n_fit,).
    # Linear solves, not an eigendecomposition: LAPACK's eigh synchronises
    # its threads hundreds of times and crawls on a loaded machine.
    self.solves = []
    for r in RIDGES:
      m = np.linalg.solve(gram + r * ridge * np.eye(len(gram)), self.phi.T)
      h = np.clip(np.einsum('ij,ji->i', self.phi, m), 0.0, 1.0 - 1e-6)
      self.solves.append((m, h))

  def _raw_features(self, x: np.ndarray) -> np.ndarray:
    lin = x if self.project is None else x @ self.project
    parts = [lin / np.sqrt(lin.shape[1])]
    for w, b in zip(self.w, self.b):
      parts.append(np.sqrt(2.0 / w.shape[1]) * np.cos(x @ w + b))
    return np.concatenate(parts, 1)

  def features(self, x_new: np.ndarray) -> np.ndarray:
    """The centred features of new inputs (n_new, d) -> (n_new, p)."""
    return self._raw_features((x_new - self.mean) / self.scale) - self.phi_mean

  def fit_predict(self, t_fit: np.ndarray, phi_new: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for new examples (their `features`) and leave-one-out
    predictions for the fit set. t_fit: (n_fit, k). Returns ((n_new, k),
    (n_fit, k))."""
    offset = t_fit.mean(0)
    t = t_fit - offset
    best = None
    for m, h in self.solves:
      coef = m @ t
      loo = t - (t - self.phi @ coef) / (1.0 - h)[:, None]
      err = float(np.mean((t - loo) ** 2))
      if best is None or err < best[0]:
        best = (err, coef, loo)
    _, coef, loo = best
    return phi_new @ coef + offset, loo + offset


def _r2(t: np.ndarray, pred: np.ndarray) -> float:
  """Held-out R^2 per output column, each clipped to [0, 1], averaged."""
  sst = np.sum((t - t.mean(0)) ** 2, 0)
  sse = np.sum((t - pred) ** 2, 0)
  ok = sst > 1e-12
  if not ok.any():
    return None
  return float(np.mean(np.clip(1.0 - sse[ok] / sst[ok], 0.0, 1.0)))


def _binary_score(t_fit, loo, t_score, pred) -> float | None:
  """2 BCA - 1 on the score half, clipped to [0, 1]; the threshold is the
  midpoint of the leave-one-out class means on the fit half."""
  t_fit, t_score = t_fit[:, 0] > 0.5, t_score[:, 0] > 0.5
  if len(set(t_fit)) < 2 or len(set(t_score)) < 2:
    return None
  threshold = 0.5 * (loo[t_fit, 0].mean() + loo[~t_fit, 0].mean())
  y_hat = pred[:, 0] > threshold
  bca = 0.5 * (np.mean(y_hat[t_score]) + np.mean(~y_hat[~t_score]))
  return float(np.clip(2.0 * bca - 1.0, 0.0, 1.0))


def probe_scores(x, targets: Mapping[str, Target], seed: int = 0
                 ) -> dict[str, float | None]:
  """Probe scores in [0, 1] of each target from the features x.

  x: (n, d) features of n held-out examples. targets: name -> (values (n,)
  or (n, k), mask (n,) bool or None = all, kind 'continuous' | 'binary').
  Each target is fit on the masked examples of a seeded half (``halves``)
  and scored on the masked examples of the other half; (n, k) targets
  report the mean of their k R^2. None where there are too few examples
  or the target is constant. Fits that share a mask share one set of
  features and ridge solves.
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  fit_half = halves(len(x), seed)
  groups: dict[bytes, list[str]] = {}
  masks = {}
  for name, (_, mask, _) in targets.items():
    mask = np.ones(len(x), bool) if mask is None else np.asarray(mask, bool)
    masks[name] = mask
    groups.setdefault(np.packbits(mask).tobytes() + bytes([len(x) % 8]),
                      []).append(name)
  scores: dict[str, float | None] = {}
  for names in groups.values():
    mask = masks[names[0]]
    fit = np.flatnonzero(mask & fit_half)
    score = np.flatnonzero(mask & ~fit_half)
    if len(fit) < MIN_EXAMPLES or len(score) < MIN_EXAMPLES:
      scores.update({n: None for n in names})
      continue
    ridge = _FeatureRidge(x[fit], seed)
    phi_score = ridge.features(x[score])
    for name in names:
      values, _, kind = targets[name]
      t = np.asarray(values, np.float64).reshape(len(x), -1)
      if np.ptp(t[fit], axis=0).max() < 1e-12:
        scores[name] = None  # Constant where it is fit: nothing to learn.
        continue
      pred, loo = ridge.fit_predict(t[fit], phi_score)
      if kind == 'binary':
        scores[name] = _binary_score(t[fit], loo, t[score], pred)
      elif kind == 'continuous':
        scores[name] = _r2(t[score], pred)
      else:
        raise ValueError(f"Unknown target kind {kind!r}; expected "
                         "'continuous' or 'binary'.")
  return {name: scores[name] for name in targets}


def probe(x, t, kind: str = 'continuous', mask=None, seed: int = 0):
  """One target: see probe_scores."""
  return probe_scores(x, {'t': (t, mask, kind)}, seed)['t']


def decoder_features(c, y, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """What the decoder receives for one label, f(y, c), on the examples
  where it carries anything: (features, bool mask over the n examples).

  c: (n, n_l); y: (n,) 0/1. 'presence': c of the y = 1 examples (f = 0
  for y = 0); 'both': [(1 - y) c0, y c1] over all examples.
  """
  c = np.asarray(c, np.float64)
  y = np.asarray(y).astype(np.float64)[:, None]
  if kind == 'presence':
    return c, y[:, 0] > 0.5
  if kind == 'both':
    c0, c1 = np.split(c, 2, axis=-1)
    return np.concatenate([(1 - y) * c0, y * c1], -1), np.ones(len(c), bool)
  raise ValueError(f'Unknown feature kind {kind!r}.')


def _factor_target(factors, name: str, select: np.ndarray) -> Target:
  """A procedural factor as a probe target on `select`, restricted to the
  examples where the factor is visible (procedural.FACTOR_SHOWN_WHEN)."""
  mask = select.copy()
  shown = procedural.FACTOR_SHOWN_WHEN.get(name)
  if shown is not None:
    mask &= np.asarray(factors[shown[0]]) == shown[1]
  kind = 'binary' if name in procedural.LABEL_KINDS else 'continuous'
  return np.asarray(factors[name]), mask, kind


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def c_leakage(c, y, kind: str, label: str, factors: Mapping[str, Any],
              seed: int = 0) -> dict[str, Any]:
  """Leakage of f(y, c) of procedural label `label` (see module doc).

  c: (n, n_l) features of the label; y: (n,) its true labels; kind
  'presence' or 'both'; factors: batched procedural factors of the same n
  examples. Returns c_leakage (mean over the non-label factors with a
  score), c_leakage_factors {factor: score}, c_own_factors_score and
  c_own_factors {factor: score}. Factors constant on the examples (e.g. an
  inactive label) are left out.
  """
  features, select = decoder_features(c, y, kind)
  own = procedural.LABEL_FACTORS[label]
  others = list(procedural.NUISANCE_FACTORS)
  for other in procedural.LABEL_KINDS:
    if other != label:
      others += [other, *procedural.LABEL_FACTORS[other]]
  targets = {n: _factor_target(factors, n, select) for n in (*others, *own)}
  scores = probe_scores(features, targets, seed)
  leak = {n: scores[n] for n in others if scores[n] is not None}
  own_scores = {n: scores[n] for n in own if scores[n] is not None}
  return {'c_leakage': _mean(leak.values()), 'c_leakage_factors': leak,
          'c_own_factors_score': _mean(own_scores.values()),
          'c_own_factors': own_scores}


def z_leakage(z, y, seed: int = 0) -> float | None:
  """How well the label y (n,) is predicted from the latents z (n, ...):
  2 BCA - 1 of the binary probe, in [0, 1]."""
  z = np.asarray(z).reshape(len(z), -1)
  return probe(z, np.asarray(y), 'binary', seed=seed)


def z_own_factors(z, label: str, factors: Mapping[str, Any],
                  seed: int = 0) -> dict[str, Any]:
  """What z (n, ...) knows of procedural label `label`'s own feature
  factors (its colour, shape, ... where they are shown): the features a
  swap should take from c, so that z should not hold them. Returns
  z_own_factors_score (their mean) and z_own_factors {factor: score}."""
  z = np.asarray(z).reshape(len(z), -1)
  select = np.ones(len(z), bool)
  own = procedural.LABEL_FACTORS[label]
  scores = probe_scores(z, {n: _factor_target(factors, n, select)
                            for n in own}, seed)
  scores = {n: v for n, v in scores.items() if v is not None}
  return {'z_own_factors_score': _mean(scores.values()),
          'z_own_factors': scores}


def _z_scores(z, labels: np.ndarray, label_names: Sequence[str],
              factors: Mapping[str, Any] | None, seed: int
              ) -> dict[str, dict[str, Any]]:
  """z_leakage and, for procedural labels with factors, z_own_factors of
  every label from one probe_scores call: the probes of all labels fit on
  the same z, so that those with equal masks (every label's y, and the
  factors shown on the same examples) share one set of features and ridge
  solves. The scores are those of the separate calls, bit for bit (each
  target is fit on its own)."""
  z = np.asarray(z).reshape(len(z), -1)
  targets, own = {}, {}
  for l, name in enumerate(label_names):
    targets[f'y/{name}'] = (np.asarray(labels[:, l]), None, 'binary')
    if factors is not None and name in procedural.LABEL_KINDS:
      select = np.ones(len(z), bool)
      own[name] = procedural.LABEL_FACTORS[name]
      targets.update({f'{name}/{n}': _factor_target(factors, n, select)
                      for n in own[name]})
  scores = probe_scores(z, targets, seed)
  out = {}
  for name in label_names:
    out[name] = {'z_leakage': scores[f'y/{name}']}
    if name in own:
      found = {n: scores[f'{name}/{n}'] for n in own[name]
               if scores[f'{name}/{n}'] is not None}
      out[name].update(z_own_factors_score=_mean(found.values()),
                       z_own_factors=found)
  return out


def leakage_metrics(codes: Mapping[str, Any], labels: np.ndarray,
                    label_names: Sequence[str], kinds: Sequence[str],
                    factors: Mapping[str, Any] | None = None,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
  """Per label name: z_leakage and, with procedural factors, the c ones
  (the same as z_leakage, c_leakage and z_own_factors one by one).

  codes: {'c': tuple of (n, n_l), 'z_q': (n, ...)} of n held-out examples
  (manipulate.encode with the true labels); labels: (n, L) int.
  """
  z_scores = _z_scores(codes['z_q'], labels, label_names, factors, seed)
  out = {}
  for l, (name, kind) in enumerate(zip(label_names, kinds)):
    row = {'z_leakage': z_scores[name]['z_leakage']}
    if factors is not None and name in procedural.LABEL_KINDS:
      row.update(c_leakage(codes['c'][l], labels[:, l], kind, name, factors,
                           seed))
      row.update(z_own_factors_score=z_scores[name]['z_own_factors_score'],
                 z_own_factors=z_scores[name]['z_own_factors'])
    out[name] = row
  return out
