"""Held-out evaluation.

evaluate(): the quick numbers after training (accuracy of argmax q(y|x) per
label, reconstruction error and, on the procedural benchmark, the exact swap
error against the ideally rendered swap, docs/procedural.md).
paper_evaluation(): the paper's metrics (section 3) for --mode=evaluate:
BCA, SR(+), SR(-), CFD, FID with an independent classifier, plus the oracle
errors; see docs/evaluation.md.
Both report the leakage probes (leakage.py): z_leakage for every dataset,
c_leakage and the own-factor control on the procedural benchmark.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from cvqvae_jax import classifier
from cvqvae_jax import inception
from cvqvae_jax import leakage
from cvqvae_jax import manipulate
from cvqvae_jax import metrics
from cvqvae_jax import paths
from cvqvae_jax import xla_options
from cvqvae_jax.data import pipeline
from cvqvae_jax.data import procedural

# The evaluation's own seed (eval.seed; not config.seed): the swap pairs and
# the probes' halves, as for the classifiers.
_eval_seed = classifier.eval_seed


def eval_step(params, batch, *, model):
  """Per-example predictions and squared reconstruction error."""
  out = model.apply({'params': params}, batch['image'], batch['label'],
                    batch['labelled'], train=False)
  return {'pred': jnp.argmax(out['logits_y'], -1),
          'sq_err': jnp.mean(jnp.square(out['x_hat'] - batch['image']),
                             axis=(1, 2, 3))}


# The held-out examples read in this process (_collect): {'key': the data
# config, 'limit': the examples asked for, 'data': what was read}. One
# entry: the learning curves and the final evaluations of both stages of a
# run read and render the test images once (the curves' first
# eval.curve_examples are a prefix of the final eval.num_examples).
_EXAMPLES: dict[str, Any] = {}


def _collect(config, limit: int) -> dict[str, np.ndarray]:
  """The first `limit` test examples, batched arrays concatenated.

  Read once per process and data config: a later call for as many examples
  or fewer slices what was read (an example does not depend on the others
  read with it). The arrays are read-only, since every evaluation of the
  process shares them; forget_examples() (or forget_compiled()) drops them.
  """
  key = config.data.to_json(sort_keys=True)
  if _EXAMPLES.get('key') != key or _EXAMPLES['limit'] < limit:
    parts = []
    for batch in pipeline.create_eval_dataset(config, 'test'):
      parts.append(batch)
      if sum(len(b['index']) for b in parts) >= limit:
        break
    data = jax.tree.map(lambda *xs: np.concatenate(xs)[:limit], *parts)
    for array in jax.tree.leaves(data):
      array.flags.writeable = False
    _EXAMPLES.update(key=key, limit=limit, data=data)
  return jax.tree.map(lambda a: a[:limit], _EXAMPLES['data'])


def held_out_examples(config, limit: int) -> dict[str, np.ndarray]:
  """The first `limit` test examples (read-only), read once per process
  with the evaluations' (_collect): the previews draw theirs from the
  same images."""
  return _collect(config, limit)


def forget_examples() -> None:
  """Drop the test examples kept by _collect and the ideal swaps kept by
  oracle_errors (the next evaluation reads and renders them again): for a
  data source whose files changed in this process."""
  _EXAMPLES.clear()
  _IDEALS.clear()


def posterior_reconstructions(params, x, labels, rng, *, model):
  """Per-example squared error of D(z, y, c) for z the most likely, a
  sampled and the expected code of q(z|x, y) (true y), and the mean
  entropy of q per latent position (categorical z only).

  The definition in one program; evaluate() computes the same numbers, bit
  for bit, from its shared pass (evaluation_pass, posterior_errors)."""
  y = jax.nn.one_hot(labels, 2, dtype=x.dtype)
  variables = {'params': params}
  codes = model.apply(variables, x, y, method='posterior_codes',
                      rngs={'sample': rng})
  _, c = model.apply(variables, x, method='classify')
  out = {}
  for how in ('most_likely', 'sample', 'expected'):
    x_hat = model.apply(variables, codes[how], y, c, method='decode')
    out[how] = jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
  if 'entropy' in codes:
    out['entropy'] = jnp.mean(codes['entropy'].reshape(x.shape[0], -1), -1)
  return out


def evaluation_pass(params, x, labels, rng, *, model):
  """Everything evaluate() needs of one batch of held-out images from one
  program, so that C_phi and the encoder run once per image for all of it:
  eval_step's predictions and error ('step'), encode's codes with the true
  labels ('codes': the swaps', the probes' and the most likely code of
  posterior_reconstructions), and the sampled and expected codes of
  q(z|x, y) with the mean entropy per latent position ('posterior', from
  the 'sample' rng as posterior_reconstructions draws them).

  XLA computes the shared C_phi and encoder once (common subexpressions);
  each output has the bits of the program it replaces (eval_step, encode,
  posterior_reconstructions' codes: tests/test_evaluation.py).
  """
  step = eval_step(params, {'image': x, 'label': labels,
                            'labelled': labels >= 0}, model=model)
  codes = manipulate.encode(model, params, x, labels)
  posterior = model.apply({'params': params}, x, codes['y'],
                          method='posterior_codes', rngs={'sample': rng})
  out = {'sample': posterior['sample'], 'expected': posterior['expected']}
  if 'entropy' in posterior:
    out['entropy'] = jnp.mean(posterior['entropy'].reshape(x.shape[0], -1),
                              -1)
  return {'step': step, 'codes': codes, 'posterior': out}


def decode_errors(params, codes, x, *, model):
  """Per-example squared error of D(codes) against x, in one program with
  the decode: an error computed from decode's images in a program of its
  own differs in the last bit for some images (the reduction is fused
  differently), so the decode and its error stay together, as in
  posterior_reconstructions."""
  x_hat = manipulate.decode(model, params, codes)
  return jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))


def predict_labels(params, x, *, model):
  """argmax q(y|x): (B, L) predicted labels."""
  return jnp.argmax(model.apply({'params': params}, x, method='classify')[0],
                    -1)


@functools.lru_cache(maxsize=16)
def _jitted_steps(model) -> dict[str, Any]:
  """The evaluation steps of `model`, jitted once per process (equal models
  share them, as manipulate.jitted)."""
  jit = lambda f: xla_options.jit(functools.partial(f, model=model))
  return {'eval_step': jit(eval_step),
          'posterior_reconstructions': jit(posterior_reconstructions),
          'evaluation_pass': jit(evaluation_pass),
          'decode_errors': jit(decode_errors),
          'predict_labels': jit(predict_labels)}


def forget_compiled() -> None:
  """Drop what evaluations share within this process, as a new process
  starts: the jitted evaluation steps (the Codecs' and manipulate's; the
  next evaluation compiles again, or reads the persistent cache), the test
  examples read and the ideal swaps rendered (forget_examples)."""
  manipulate.jitted.cache_clear()
  _jitted_steps.cache_clear()
  forget_examples()


class Codec(manipulate.Codec):
  """manipulate.Codec plus the jitted evaluation steps of the same model
  (shared by every Codec of an equal model: one compilation per shape)."""

  def __init__(self, model):
    super().__init__(model)
    for name, fn in _jitted_steps(model).items():
      setattr(self, name, fn)


def ideal_swaps(factors, base_idx, donor_idx, label: str,
                size: int) -> np.ndarray:
  """Ideal renders of base_idx[i] with the `label` of donor_idx[i].

  factors: batched procedural factors (name -> array with a leading axis).
  Returns (len(base_idx), size, size, 3).
  """
  examples = procedural.unstack_factors(factors)
  return np.stack([procedural.render_ideal_swap(examples[b], examples[d],
                                                label, size)
                   for b, d in zip(base_idx, donor_idx)])


# Ideal swaps rendered in this process (oracle_errors), by label, image
# size and a digest of the pairs' factors; beyond IDEAL_CACHE_BYTES the
# least recently used go. The learning curves of a run swap the same pairs
# of the same images every time, and render them once.
_IDEALS: collections.OrderedDict = collections.OrderedDict()
IDEAL_CACHE_BYTES = 128 << 20


def _cached_ideal_swaps(factors, base_idx, donor_idx, label: str,
                        size: int) -> np.ndarray:
  """ideal_swaps, rendered once per process for the same factors (a render
  depends on the factors of its two examples only). Read-only."""
  digest = hashlib.blake2b(digest_size=16)
  for name in sorted(factors):
    values = np.asarray(factors[name])
    for idx in (base_idx, donor_idx):
      part = np.ascontiguousarray(values[idx])
      digest.update(f'{name} {part.dtype} {part.shape}'.encode())
      digest.update(part.tobytes())
  key = (label, size, digest.hexdigest())
  if key in _IDEALS:
    _IDEALS.move_to_end(key)
    return _IDEALS[key]
  ideal = ideal_swaps(factors, base_idx, donor_idx, label, size)
  ideal.flags.writeable = False
  _IDEALS[key] = ideal
  while (len(_IDEALS) > 1
         and sum(a.nbytes for a in _IDEALS.values()) > IDEAL_CACHE_BYTES):
    _IDEALS.popitem(last=False)
  return ideal


def swap_pairs(labels: np.ndarray, label: int, num_pairs: int, seed: int):
  """Seeded random pairs (i0, i1) of test indices with y = 0 and y = 1 for
  label `label` (paper 3), or None when one class is absent."""
  zeros = np.flatnonzero(labels[:, label] == 0)
  ones = np.flatnonzero(labels[:, label] == 1)
  if not len(zeros) or not len(ones):
    return None
  rng = np.random.default_rng(seed)
  return rng.choice(zeros, num_pairs), rng.choice(ones, num_pairs)


def encode_examples(codec: Codec, params, data,
                    batch_size: int) -> dict[str, Any]:
  """codec.encode of every image of `data` with its true labels (as the
  swaps and the leakage probes take them), batched: encode's codes ('y',
  'c', 'z_q', ...) as numpy arrays over the examples.

  An evaluation encodes each image once with it, and every swap pair, the
  unswapped reconstructions and the probes index these codes: an image's
  codes do not depend on the other images of its batch (bit for bit, at
  the fixed batch shape of metrics.batched, on CPU: tests/test_evaluation.py
  and docs/performance.md).
  """
  return metrics.batched(lambda x, labels: codec.encode(params, x, labels),
                         (data['image'], data['label']), batch_size)


def _placed(codes, params):
  """Host codes on the devices of `params`, where encode puts its outputs:
  decoding them runs the program that decodes encode's outputs
  (codec.reconstruct's), not one compiled for host inputs of its own."""
  leaf = jax.tree.leaves(params)[0]
  if not isinstance(leaf, jax.Array):
    return codes
  return jax.device_put(codes, leaf.sharding)


def _swapped_decodes(codec: Codec, params, codes, label: int, base_idx,
                     donor_idx, batch_size: int,
                     without_c: bool = False) -> np.ndarray:
  """D of the codes of base_idx[i] with y and c of label `label` from
  donor_idx[i] (manipulate.swap_label), the moved c multiplied by 0 with
  without_c; batched over the pairs. The swap is made on the host, so that
  decode gets the same kind of inputs as after an encode."""
  def decode(b, d):
    base = jax.tree.map(lambda a: a[b], codes)
    y = base['y']  # A copy: indexed by an array.
    y[:, label] = codes['y'][d, label]
    moved = codes['c'][label][d]
    moved = 0.0 * moved if without_c else moved
    c = tuple(moved if l == label else c_l for l, c_l in enumerate(base['c']))
    return codec.decode(params, _placed({**base, 'y': y, 'c': c}, params))
  return metrics.batched(decode, (np.asarray(base_idx), np.asarray(donor_idx)),
                         batch_size)


def _pair_codes(codec: Codec, params, data, i0, i1, batch_size: int):
  """encode_examples of the images the pairs (i0, i1) use, each once, and
  the pairs as indices into them."""
  used = np.unique(np.concatenate([i0, i1]))
  codes = encode_examples(codec, params, {'image': data['image'][used],
                                          'label': data['label'][used]},
                          batch_size)
  return codes, np.searchsorted(used, i0), np.searchsorted(used, i1)


def swap_fakes(codec: Codec, params, data, label: int, i0, i1,
               batch_size: int, codes=None,
               without_c: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """fake+ = D(z_0, c_1, y = 1) and fake- = D(z_1, c_0, y = 0) of each pair,
  with the true labels (paper 3).

  codes: encode_examples of `data`, when the caller has them (evaluate and
  paper_evaluation: one encode per image for every label's swaps, the
  reconstructions and the probes); without, the pairs' images are encoded
  here, each once. The fakes are those of codec.swap, bit for bit (one
  program there, encode and decode here; on CPU, tests/test_evaluation.py).
  without_c: the moved label's c multiplied by 0 (swap_fakes_without_c).
  """
  if codes is None:
    codes, i0, i1 = _pair_codes(codec, params, data, i0, i1, batch_size)
  fake = functools.partial(_swapped_decodes, codec, params, codes, label,
                           batch_size=batch_size, without_c=without_c)
  return fake(i0, i1), fake(i1, i0)


def label_region(ideal: np.ndarray, source: np.ndarray, dilation: int = 1,
                 tol: float = 1e-3) -> np.ndarray:
  """Where a swap should change the image: the pixels in which the ideal
  render differs from the unswapped source (the glasses' frames, the mouth,
  the head outline), grown by `dilation` pixels so that the soft edges a
  model draws around them count as inside. (B, S, S) bool.

  Outside it the ideal swap equals the source exactly: what the swap should
  leave alone.
  """
  mask = np.max(np.abs(ideal - source), axis=-1) > tol
  for _ in range(dilation):
    grown = mask.copy()
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    grown[:, :, 1:] |= mask[:, :, :-1]
    grown[:, :, :-1] |= mask[:, :, 1:]
    mask = grown
  return mask


def masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
  """Squared error of (B, S, S, C) images averaged over the pixels (and
  channels) where `mask` (B, S, S) is true; None for an empty mask."""
  count = float(mask.sum())
  if not count:
    return None
  sq = np.mean(np.square(a - b), axis=-1)
  return float(np.sum(sq * mask) / count)


def oracle_errors(data, name: str, i0, i1, fake_plus, fake_minus,
                  reconstructions=None, fakes_without_c=None
                  ) -> dict[str, float]:
  """MSE of fake+/fake- against the ideal render, and of doing nothing (the
  source image against the same render), over the whole image and split by
  the label's region (label_region: inside, where the swap should act, and
  outside, what it should leave alone).

  reconstructions: optional (D(E(x[i0])), D(E(x[i1]))), the model's unswapped
  reconstructions; they add oracle_reconstruction_mse_plus/minus, doing
  nothing through the model, which separates blur from a failed swap.
  fakes_without_c: optional (fake+, fake-) decoded with the donor's c set to
  0 (lambda = 0 in D(z, y, lambda c)); they add oracle_swap_region_mse_*_c0,
  so that the region error at lambda = 0 against lambda = 1 says what c
  itself contributes to the swap.
  """
  x = data['image']
  ideal_plus = _cached_ideal_swaps(data['factors'], i0, i1, name, x.shape[1])
  ideal_minus = _cached_ideal_swaps(data['factors'], i1, i0, name,
                                    x.shape[1])
  mse = lambda a, b: float(np.mean(np.square(a - b)))
  errors = {'oracle_swap_mse_plus': mse(fake_plus, ideal_plus),
            'oracle_swap_mse_minus': mse(fake_minus, ideal_minus),
            'oracle_identity_mse_plus': mse(x[i0], ideal_plus),
            'oracle_identity_mse_minus': mse(x[i1], ideal_minus)}
  sides = {'plus': (x[i0], ideal_plus, fake_plus, 0),
           'minus': (x[i1], ideal_minus, fake_minus, 1)}
  for side, (source, ideal, fake, k) in sides.items():
    inside = label_region(ideal, source)
    errors[f'oracle_swap_region_mse_{side}'] = masked_mse(fake, ideal, inside)
    errors[f'oracle_identity_region_mse_{side}'] = masked_mse(source, ideal,
                                                              inside)
    errors[f'oracle_swap_outside_region_mse_{side}'] = masked_mse(
        fake, ideal, ~inside)
    errors[f'region_share_{side}'] = float(inside.mean())
    if reconstructions is not None:
      errors[f'oracle_reconstruction_mse_{side}'] = mse(reconstructions[k],
                                                        ideal)
      errors[f'oracle_reconstruction_outside_region_mse_{side}'] = masked_mse(
          reconstructions[k], ideal, ~inside)
    if fakes_without_c is not None:
      errors[f'oracle_swap_region_mse_{side}_c0'] = masked_mse(
          fakes_without_c[k], ideal, inside)
  return {k: v for k, v in errors.items() if v is not None}


def swap_fakes_without_c(codec: Codec, params, data, label: int, i0, i1,
                         batch_size: int, codes=None
                         ) -> tuple[np.ndarray, np.ndarray]:
  """fake+ and fake- as swap_fakes, with the moved label's c multiplied by
  0: D(z_0, 0 c_1, y = 1) and D(z_1, 0 c_0, y = 0). codes: as swap_fakes."""
  return swap_fakes(codec, params, data, label, i0, i1, batch_size, codes,
                    without_c=True)


def oracle_swap_errors(codec: Codec, params, data, label: int, name: str,
                       num_pairs: int, seed: int, batch_size: int,
                       codes=None):
  """The oracle numbers (oracle_errors, with the lambda = 0 fakes) of
  `num_pairs` seeded swap pairs (or {}). codes: as swap_fakes; the pairs'
  images are encoded once for both kinds of fakes."""
  pairs = swap_pairs(data['label'], label, num_pairs, seed)
  if pairs is None:
    return {}
  i0, i1 = pairs
  if codes is None:
    codes, i0, i1 = _pair_codes(codec, params, data, i0, i1, batch_size)
  fakes = swap_fakes(codec, params, data, label, i0, i1, batch_size, codes)
  without_c = swap_fakes_without_c(codec, params, data, label, i0, i1,
                                   batch_size, codes)
  return oracle_errors(data, name, *pairs, *fakes,
                       fakes_without_c=without_c)


def leakage_results(codec: Codec, params, data, config, codes=None
                    ) -> dict[str, dict[str, Any]]:
  """leakage.leakage_metrics of the held-out `data`, encoded with the true
  labels (as the swaps are): per label z_leakage and, with procedural
  factors, c_leakage, c_leakage_factors, c_own_factors_score,
  c_own_factors, z_own_factors_score and z_own_factors. codes:
  encode_examples of `data`, if the caller has them."""
  if codes is None:
    codes = encode_examples(codec, params, data, config.eval.batch_size)
  return leakage.leakage_metrics(
      codes, data['label'], tuple(config.data.labels),
      codec.model.feature_kinds, data.get('factors'),
      seed=_eval_seed(config))


POSTERIOR_CODES = ('most_likely', 'sample', 'expected')


def posterior_errors(codec: Codec, params, x, codes, posterior,
                     batch_size: int) -> dict[str, np.ndarray]:
  """posterior_reconstructions' per-example errors from evaluation_pass's
  outputs: D(z, y, c) with encode's codes (y true, z the most likely code:
  encode's z_q is posterior_codes' most likely code, bit for bit) and with
  z the sampled or the expected code, each decoded by decode_errors.

  A code that equals one decoded before (bit for bit: the Gaussian models'
  expected z is their most likely one, the mean; variant A's three are the
  nearest code) is not decoded again: the same program on the same inputs
  gives the same errors.
  """
  zs = {'most_likely': codes['z_q'], **posterior}
  errors = {}
  for how in POSTERIOR_CODES:
    same = next((k for k in errors if np.array_equal(zs[k], zs[how])), None)
    if same is not None:
      errors[how] = errors[same]
      continue
    z = zs[how]
    errors[how] = metrics.batched(
        lambda i, images, z=z: codec.decode_errors(
            params, {**jax.tree.map(lambda a: a[i], codes), 'z_q': z[i]},
            images), (np.arange(len(x)), x), batch_size)
  return errors


def evaluate(params, model, config, codec: Codec | None = None,
             num_examples: int | None = None) -> dict[str, float]:
  """Held-out numbers on the first `num_examples` (default
  config.eval.num_examples) test images, a flat dict:
  eval_reconstruction_mse (most likely y and z);
  eval_reconstruction_mse_{most_likely,sample,expected} (true y; z the most
  likely, a sampled or the expected code: posterior_reconstructions),
  eval_posterior_entropy (categorical z: nats per position), eval_accuracy_LABEL,
  eval_LABEL_z_leakage and, with factors available, eval_LABEL_oracle_*
  (see oracle_swap_errors), eval_LABEL_c_leakage and
  eval_LABEL_c_own_factors_score, eval_LABEL_z_own_factors_score
  (leakage_results; a probe without enough
  examples is left out)."""
  data = _collect(config, num_examples or config.eval.num_examples)
  codec = codec or Codec(model)
  bs = config.eval.batch_size
  rng = jax.random.key(config.seed)
  # One pass per image (C_phi and the encoder once) for the predictions,
  # the codes of the swaps of every label, of the probes and of the
  # posterior's reconstructions.
  passed = metrics.batched(
      lambda x, l: codec.evaluation_pass(params, x, l, rng),
      (data['image'], data['label']), bs)
  out, codes, posterior = passed['step'], passed['codes'], passed['posterior']
  results = {'eval_reconstruction_mse': float(out['sq_err'].mean())}
  entropy = posterior.pop('entropy', None)
  errors = posterior_errors(codec, params, data['image'], codes, posterior,
                            bs)
  for how in POSTERIOR_CODES:
    results[f'eval_reconstruction_mse_{how}'] = float(errors[how].mean())
  if entropy is not None:
    results['eval_posterior_entropy'] = float(entropy.mean())
  for l, name in enumerate(config.data.labels):
    results[f'eval_accuracy_{name}'] = float(
        np.mean(out['pred'][:, l] == data['label'][:, l]))
    if 'factors' in data:
      oracle = oracle_swap_errors(codec, params, data, l, name,
                                  config.eval.num_pairs,
                                  _eval_seed(config), bs,
                                  codes)
      results.update({f'eval_{name}_{k}': v for k, v in oracle.items()})
  leaks = leakage_results(codec, params, data, config, codes)
  for name, row in leaks.items():
    for key in ('c_leakage', 'c_own_factors_score', 'z_leakage',
                'z_own_factors_score'):
      if row.get(key) is not None:
        results[f'eval_{name}_{key}'] = row[key]
    if row.get('c_leakage_factors'):
      results[f'eval_{name}_c_leakage_max'] = max(
          row['c_leakage_factors'].values())
  return results


def _label_metrics(codec, params, data, l, name, config, classifier,
                   fid_net, real_fid_stats, real_clf_stats, model_pred,
                   codes):
  """The paper's numbers for one label (eval/results.json, docs/evaluation.md)."""
  y = data['label'][:, l]
  row = {'bca': float(metrics.balanced_accuracy(y, model_pred[:, l])),
         'accuracy': float(np.mean(model_pred[:, l] == y)),
         'classifier_accuracy': classifier.test_accuracy,
         'classifier_bca': classifier.test_bca}
  pairs = swap_pairs(data['label'], l, config.eval.num_pairs,
                     _eval_seed(config))
  if pairs is None:  # One class absent from the test split.
    return {**row, 'sr_plus': None, 'sr_minus': None, 'cfd': None,
            'fid': None, 'classifier_fd': None}
  i0, i1 = pairs
  bs = config.eval.batch_size
  fake_plus, fake_minus = swap_fakes(codec, params, data, l, i0, i1, bs,
                                     codes)
  x = data['image']
  judge = lambda a: metrics.batched(classifier.outputs, (a,), bs)
  (p_plus, f_plus), (p_minus, f_minus) = judge(fake_plus), judge(fake_minus)
  (p_x1, _), (p_x0, _) = judge(x[i1]), judge(x[i0])
  cfd_plus = float(metrics.classifier_feature_distance(p_x1, p_plus))
  cfd_minus = float(metrics.classifier_feature_distance(p_x0, p_minus))
  row.update({
      'sr_plus': float(metrics.swap_success_rate(p_plus, 1)),
      'sr_minus': float(metrics.swap_success_rate(p_minus, 0)),
      'cfd': (cfd_plus + cfd_minus) / 2,  # Both directions, N pairs each.
      'cfd_plus': cfd_plus, 'cfd_minus': cfd_minus,
      'num_pairs': int(len(i0)),
      'classifier_fd': metrics.frechet_distance(
          *metrics.feature_statistics(np.concatenate([f_plus, f_minus])),
          *real_clf_stats[name]),
      'fid': None})
  if fid_net is not None:
    fakes = np.concatenate([fake_plus, fake_minus])
    row['fid'] = metrics.frechet_distance(*fid_net.statistics(fakes),
                                          *real_fid_stats)
  if 'factors' in data:
    # D(E(x)) of the sources: codec.reconstruct, from the codes.
    reconstruct = lambda i: codec.decode(
        params, _placed(jax.tree.map(lambda a: a[i], codes), params))
    recons = tuple(metrics.batched(reconstruct, (i,), bs) for i in (i0, i1))
    without_c = swap_fakes_without_c(codec, params, data, l, i0, i1, bs,
                                     codes)
    row.update(oracle_errors(data, name, i0, i1, fake_plus, fake_minus,
                             recons, without_c))
  return row


def paper_evaluation(params, model, config, workdir: str,
                     step: int) -> dict[str, Any]:
  """BCA, SR(+), SR(-), CFD, FID (paper 3), z_leakage and, on the
  procedural benchmark, the oracle errors and c_leakage (leakage_results),
  per label: the eval/results.json dict.

  Trains (or restores from WORKDIR/classifier/) the independent classifiers
  and loads the FID Inception weights of config.eval.fid_weights, if any.
  """
  data = _collect(config, config.eval.num_examples)
  bs = config.eval.batch_size
  codec = Codec(model)
  model_pred = metrics.batched(lambda x: codec.predict_labels(params, x),
                               (data['image'],), bs)
  classifiers = classifier.load_or_train(config, workdir)
  fid_net, real_fid_stats = None, None
  if config.eval.fid_weights:
    fid_net = inception.FIDFeatures(config.eval.fid_weights,
                                    config.eval.fid_batch_size)
    real_fid_stats = fid_net.statistics(data['image'])
  real_clf_stats = {
      name: metrics.feature_statistics(
          metrics.batched(clf.outputs, (data['image'],), bs)[1])
      for name, clf in classifiers.items()}
  # One encode per image for the swaps, reconstructions and probes.
  codes = encode_examples(codec, params, data, bs)
  labels = {}
  for l, name in enumerate(config.data.labels):
    labels[name] = _label_metrics(codec, params, data, l, name, config,
                                  classifiers[name], fid_net, real_fid_stats,
                                  real_clf_stats, model_pred, codes)
  for name, row in leakage_results(codec, params, data, config,
                                   codes).items():
    labels[name].update(row)
  return {'model': config.model.name, 'dataset': config.data.name,
          'step': int(step), 'labels': labels,
          'classifier': config.eval.classifier,
          'fid_weights': config.eval.fid_weights or None,
          'num_test_examples': int(len(data['image']))}


def write_results(workdir: str, results: dict[str, Any]) -> str:
  directory = epath.Path(paths.join(workdir, 'eval'))
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / 'results.json'
  path.write_text(json.dumps(results, indent=2))
  return str(path)


TABLE_COLUMNS = (('bca', 'BCA'), ('sr_plus', 'SR(+)'), ('sr_minus', 'SR(-)'),
                 ('cfd', 'CFD'), ('fid', 'FID'),
                 ('classifier_fd', 'clf-FD'),
                 ('classifier_accuracy', 'clf acc'),
                 ('oracle_swap_mse_plus', 'oracle+'),
                 ('oracle_identity_mse_plus', 'ident+'),
                 ('oracle_reconstruction_mse_plus', 'recon+'),
                 ('oracle_swap_mse_minus', 'oracle-'),
                 ('oracle_identity_mse_minus', 'ident-'),
                 ('oracle_reconstruction_mse_minus', 'recon-'),
                 ('c_leakage', 'c-leak'), ('z_leakage', 'z-leak'))


def format_table(results: dict[str, Any]) -> str:
  """The results as a plain-text table, one row per label."""
  rows = results['labels']
  columns = [(k, t) for k, t in TABLE_COLUMNS
             if any(k in r for r in rows.values())]
  width = max([5] + [len(n) for n in rows]) + 2
  fmt = lambda v: '-' if v is None else f'{v:.4f}'
  lines = [f"{results['model']} on {results['dataset']}, step "
           f"{results['step']} (classifier {results['classifier']})",
           ''.ljust(width) + ''.join(t.rjust(9) for _, t in columns)]
  for name, r in rows.items():
    lines.append(name.ljust(width)
                 + ''.join(fmt(r.get(k)).rjust(9) for k, _ in columns))
  return '\n'.join(lines)
