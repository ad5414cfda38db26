"""The mechanisms beyond the paper (docs/model.md, "Extensions"): each term
on hand-made inputs, its gradient reaching only the parameters it should,
the region oracle errors, and the paper's configs with every one off."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from cvqvae_jax import config_checks
from cvqvae_jax import config_files
from cvqvae_jax import evaluation
from cvqvae_jax import objectives
from cvqvae_jax import train


def test_adversary_fit_loss_by_hand():
  # One example, one label: q_A = softmax([0, log 3]) = (1/4, 3/4), y = 1.
  logits = jnp.array([[[0.0, math.log(3.0)]]])
  y = jnp.array([[[0.0, 1.0]]])
  np.testing.assert_allclose(objectives.adversary_fit_loss(logits, y),
                             -math.log(0.75), rtol=1e-6)


def test_invariance_loss_by_hand():
  # KL(U || (1/4, 3/4)) = log 2 ... = -log 2 - (log 1/4 + log 3/4) / 2.
  logits = jnp.array([[[0.0, math.log(3.0)], [5.0, 5.0]]])
  expected = -math.log(2) - 0.5 * (math.log(0.25) + math.log(0.75))
  np.testing.assert_allclose(objectives.invariance_loss(logits), expected,
                             rtol=1e-6)  # The uncertain second label adds 0.


def test_swap_consistency_terms_by_hand():
  out = {'swap_f': jnp.array([[1.0, 0.0]]),
         'swap_f_read': jnp.array([[0.0, 0.0]]),
         'swap_z_read': jnp.full((1, 2, 2, 1), 3.0),
         'swap_z_target': jnp.full((1, 2, 2, 1), 1.0),
         'swap_y': jnp.array([[[0.0, 1.0]]]),
         'swap_logits_read': jnp.array([[[0.0, math.log(3.0)]]]),
         'swap_z_invariant_read': jnp.full((1, 2, 2, 1), 1.0)}
  terms = objectives.swap_consistency_terms(out)
  np.testing.assert_allclose(terms['swap_z_cycle'], 4.0)
  np.testing.assert_allclose(terms['swap_c_cycle'], 0.5)
  np.testing.assert_allclose(terms['swap_classification'], -math.log(0.75),
                             rtol=1e-6)
  assert objectives.swap_consistency_terms({}) == {}


def test_normalised_distance_by_hand():
  # Targets (0, 0), (2, 0), (0, 2), (2, 2): variance 1 per entry, 2 in all.
  # Each read is 1 off in one entry: 1 / 2, at any scale of z.
  target = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
  read = target + jnp.array([1.0, 0.0])
  np.testing.assert_allclose(objectives.normalised_distance(read, target),
                             0.5, rtol=1e-5)
  np.testing.assert_allclose(
      objectives.normalised_distance(10 * read, 10 * target), 0.5, rtol=1e-5)
  # A shuffled copy that pairs each example with an independent one (half
  # equal, half 2 apart): 2, the value for unrelated z; all apart: 4.
  a = jnp.array([[0.0], [2.0], [0.0], [2.0]])
  np.testing.assert_allclose(objectives.normalised_distance(
      jnp.array([[0.0], [0.0], [2.0], [2.0]]), a), 2.0, rtol=1e-5)
  np.testing.assert_allclose(
      objectives.normalised_distance(a[::-1], a), 4.0, rtol=1e-5)
  grad_target = jax.grad(lambda t: objectives.normalised_distance(read, t))
  assert not np.any(grad_target(target))  # the target is held fixed


class _Objective(dict):
  __getattr__ = dict.__getitem__
  def get(self, k, d=None):  # noqa: D102
    return dict.get(self, k, d)


def test_weighted_loss_counts_the_extension_terms():
  terms = {'reconstruction': 1.0, 'kl': 10.0, 'classification': 2.0,
           'z_adversary': 0.5, 'z_invariance': 3.0, 'swap_z_cycle': 4.0,
           'swap_c_cycle': 5.0, 'swap_classification': 6.0}
  objective = _Objective(beta=0.1, alpha=1.0, commitment=0.25,
                         z_invariance=0.1, swap_z_cycle=0.01,
                         swap_c_cycle=0.1, swap_classification=0.0)
  # 1 + 1 + 2 + 0.5 (adversary, unweighted) + 0.3 + 0.04 + 0.5 + 0.
  np.testing.assert_allclose(objectives.weighted_loss(terms, objective),
                             5.34, rtol=1e-6)


def _grads(config, term):
  setup = train.build(config)
  params = train.jit_init(setup)(jax.random.key(0)).params
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.uniform(-1, 1, (8, 16, 16, 3)),
                                jnp.float32),
           'label': jnp.asarray(rng.integers(0, 2, (8, 2)), jnp.int32),
           'labelled': jnp.ones((8, 2), bool)}

  def value(p):
    _, terms = train.loss_fn(p, batch, jax.random.key(1), 0,
                             model=setup.model, objective=config.objective)
    return terms[term]

  grads = jax.grad(value)(params)
  return {k: float(max(jnp.max(jnp.abs(g)) for g in jax.tree.leaves(v)))
          for k, v in grads.items()}


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_adversary_terms_train_only_their_side(name):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          'model.z_adversary_width': 16,
                          'objective.z_invariance': 0.1})
  fit = _grads(config, 'z_adversary')
  assert fit['z_adversary'] > 0
  assert all(v == 0 for k, v in fit.items() if k != 'z_adversary')
  confuse = _grads(config, 'z_invariance')
  assert confuse['z_adversary'] == 0 and confuse['encoder'] > 0
  assert confuse['decoder'] == 0


def test_swap_cycle_trains_the_decoder_not_the_readers():
  config = tiny_config(**{'stage_one.model': '',
                          'model.swap_consistency': True,
                          'objective.swap_z_cycle': 1.0})
  for term in ('swap_z_cycle', 'swap_c_cycle', 'swap_classification'):
    g = _grads(config, term)
    assert g['decoder'] > 0, term
    assert g['codebook'] == 0, term


def test_region_errors_split_inside_from_outside():
  config = tiny_config()
  from cvqvae_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  batch = next(iter(pipeline.create_eval_dataset(config, 'test',
                                                 batch_size=16)))
  i0, i1 = evaluation.swap_pairs(batch['label'], 0, 6, seed=0)
  ideal_plus = evaluation.ideal_swaps(batch['factors'], i0, i1, 'glasses', 16)
  ideal_minus = evaluation.ideal_swaps(batch['factors'], i1, i0, 'glasses',
                                       16)
  inside = evaluation.label_region(ideal_plus, batch['image'][i0])
  assert 0 < inside.mean() < 0.5
  # A fake wrong only outside the region: inside error 0, outside not.
  off = np.where(inside[..., None], ideal_plus, ideal_plus + 0.5)
  e = evaluation.oracle_errors(batch, 'glasses', i0, i1, off, ideal_minus)
  assert e['oracle_swap_region_mse_plus'] == 0.0
  np.testing.assert_allclose(e['oracle_swap_outside_region_mse_plus'], 0.25,
                             rtol=1e-6)
  # ... and one wrong only inside it: the other way round.
  on = np.where(inside[..., None], ideal_plus + 0.5, ideal_plus)
  e = evaluation.oracle_errors(batch, 'glasses', i0, i1, on, ideal_minus)
  np.testing.assert_allclose(e['oracle_swap_region_mse_plus'], 0.25,
                             rtol=1e-6)
  assert e['oracle_swap_outside_region_mse_plus'] == 0.0
  # Doing nothing is exact outside the region by construction.
  np.testing.assert_allclose(
      evaluation.masked_mse(batch['image'][i0], ideal_plus, ~inside), 0.0)
  assert e['oracle_identity_region_mse_plus'] > 0.01


PAPER_CONFIGS = ('celeba_glasses', 'celeba_smile', 'celeba_beard',
                 'celeba_makeup', 'celeba_glasses_smile',
                 'chexpert_cardiomegaly', 'chexpert_atelectasis',
                 'chexpert_consolidation')


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_paper_configs_have_every_extension_off(name):
  config = config_files.load(os.path.join(ROOT, 'configs',
                                          f'{name}.py')).get_config()
  assert config.model.z_adversary_width == 0
  assert not config.model.swap_consistency
  assert not config.model.feature_film
  assert config.model.token_dropout == 0.0
  assert not config.stage_one.warm_start
  assert not config.model.feature_locality
  assert config.model.region_masking == 0.0
  assert not config.model.encoder_masking
  assert not config.model.feature_masking
  for weight in ('z_invariance', 'z_mmd', 'z_hsic', 'c_hsic', 'c_labels_hsic',
                 'z_features_hsic', 'swap_z_cycle', 'swap_c_cycle',
                 'swap_classification', 'swap_z_invariance', 'c_locality',
                 'region_reconstruction', 'region_chroma'):
    assert config.objective[weight] == 0.0


def test_label_mmd_by_hand():
  # z = +1 for y = 1, -1 for y = 0 (already standardised). Squared distances
  # 0 within a class, 4 across; median 4. Within: RBF 1 + linear 1 = 2;
  # across: mean_b exp(-4 / (4 b^2)) - 1. MMD^2 = 2 + 2 - 2 * across.
  z = jnp.array([[1.0], [1.0], [-1.0], [-1.0]])
  y = jax.nn.one_hot(jnp.array([[1], [1], [0], [0]]), 2)
  across = np.mean([math.exp(-1.0 / b ** 2)
                    for b in objectives.MMD_BANDWIDTHS]) - 1.0
  np.testing.assert_allclose(objectives.label_mmd(z, y), 4.0 - 2.0 * across,
                             rtol=1e-5)
  np.testing.assert_allclose(jax.jit(objectives.label_mmd)(z, y),
                             objectives.label_mmd(z, y), rtol=1e-6)
  # Scale-invariant, and near 0 when z does not depend on y.
  np.testing.assert_allclose(objectives.label_mmd(10 * z, y),
                             objectives.label_mmd(z, y), rtol=1e-5)
  rng = np.random.default_rng(0)
  labels = jax.nn.one_hot(rng.integers(0, 2, (64, 1)), 2)
  independent = objectives.label_mmd(jnp.asarray(rng.normal(size=(64, 32))),
                                     labels)
  assert abs(float(independent)) < 0.02
  dependent = rng.normal(size=(64, 32)) + 2.0 * np.asarray(labels[:, :, 1])
  assert float(objectives.label_mmd(jnp.asarray(dependent), labels)) > 0.5


def test_label_cka_by_hand():
  # One position, D = 1. z = y: squared distances 0 within a class, 1
  # across; the median of the six pairs is 1, so K = 1 within, e^-1 across:
  # a function of y, and after centring proportional to u u^T: CKA 1.
  y = jax.nn.one_hot(jnp.array([[0], [0], [1], [1]]), 2)
  np.testing.assert_allclose(
      objectives.label_cka(jnp.array([[0.0], [0.0], [1.0], [1.0]]), y), 1.0,
      rtol=1e-5)
  # z splits the examples the other way (0, 1, 0, 1): its centred kernel is
  # orthogonal to y's, CKA exactly 0.
  np.testing.assert_allclose(
      objectives.label_cka(jnp.array([[0.0], [1.0], [0.0], [1.0]]), y), 0.0,
      atol=1e-6)
  # Positions are averaged: one of four that is y, three that are not, 1/4.
  z = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0],
                 [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])[:, :, None]
  np.testing.assert_allclose(objectives.label_cka(z, y), 0.25, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(objectives.label_cka)(z, y),
                             objectives.label_cka(z, y), rtol=1e-6)
  # Scale-invariant; near its floor 1 / sqrt(B) when z is independent of y,
  # near 1 when every position shifts with y.
  np.testing.assert_allclose(objectives.label_cka(10 * z, y),
                             objectives.label_cka(z, y), rtol=1e-5)
  rng = np.random.default_rng(0)
  labels = jax.nn.one_hot(rng.integers(0, 2, (64, 1)), 2)
  noise = rng.normal(size=(64, 4, 4, 8))
  assert float(objectives.label_cka(jnp.asarray(noise), labels)) < 0.2
  shifted = noise + 3.0 * np.asarray(labels[:, 0, 1])[:, None, None, None]
  assert float(objectives.label_cka(jnp.asarray(shifted), labels)) > 0.8


def test_features_cka_by_hand():
  # Four examples, one position of z and c both (0, 0, 1, 1): squared
  # distances 0 or 1, medians 1, the same kernel; with the diagonals left
  # out, the centred kernels still agree: alignment 1. c = (0, 1, 0, 1)
  # splits the examples the other way: the centred kernels are s s^T / 2
  # and t t^T / 2 (s = (1, 1, -1, -1), t = (1, -1, 1, -1)), whose 12
  # off-diagonal entries (all +-1/2) agree in 4 and differ in 8: -1/3.
  z = jnp.array([[0.0], [0.0], [1.0], [1.0]])
  np.testing.assert_allclose(objectives.features_cka([z], z), 1.0, rtol=1e-5)
  other = jnp.array([[0.0], [1.0], [0.0], [1.0]])
  np.testing.assert_allclose(objectives.features_cka([other], z), -1 / 3,
                             rtol=1e-5)
  # Labels add up; scale-free; small for independent c, large when z holds
  # c's values at every position.
  np.testing.assert_allclose(objectives.features_cka([z, 5 * z], z), 2.0,
                             rtol=1e-5)
  rng = np.random.default_rng(0)
  latent = rng.normal(size=(32, 4, 4, 8))
  c = rng.normal(size=(32, 4))
  assert abs(float(objectives.features_cka([jnp.asarray(c)],
                                           jnp.asarray(latent)))) < 0.2
  latent[..., :4] += 2.0 * c[:, None, None, :]
  assert float(objectives.features_cka([jnp.asarray(c)],
                                       jnp.asarray(latent))) > 0.8


def test_z_features_cka_by_hand():
  # Four examples; z has two positions: the first repeats f = (0, 0, 1, 1)
  # (alignment 1, as in features_cka), the second splits the examples the
  # other way (-1/3): their mean is 1/3. Labels add up.
  f = jnp.array([[0.0], [0.0], [1.0], [1.0]])
  other = jnp.array([[0.0], [1.0], [0.0], [1.0]])
  z = jnp.stack([f, other], axis=1)                          # (4, 2, 1)
  np.testing.assert_allclose(objectives.z_features_cka(z, [f]), 1 / 3,
                             rtol=1e-5)
  np.testing.assert_allclose(objectives.z_features_cka(z, [f, other]),
                             2 / 3, rtol=1e-5)
  # One position that knows the look of the present label's examples only
  # (f = y c, 0 where absent) is seen, whatever the other positions hold.
  rng = np.random.default_rng(0)
  present = rng.integers(0, 2, 64).astype(np.float32)
  f_l = present[:, None] * rng.normal(size=(64, 4))
  latent = rng.normal(size=(64, 4, 4, 8))
  free = float(objectives.z_features_cka(jnp.asarray(latent),
                                         [jnp.asarray(f_l)]))
  latent[:, 1, 2, :4] = 3.0 * f_l
  told = float(objectives.z_features_cka(jnp.asarray(latent),
                                         [jnp.asarray(f_l)]))
  assert abs(free) < 0.05 and told > free + 0.8 / 16


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_hsic_terms_train_only_their_side(name):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          'objective.z_hsic': 1.0, 'objective.c_hsic': 1.0})
  g = _grads(config, 'z_hsic')
  assert g['encoder'] > 0
  assert all(v == 0 for k, v in g.items()
             if k not in ('encoder', 'to_gaussian')), g
  # c leaves out what z knows: C_phi moves, E_phi does not.
  g = _grads(config, 'c_hsic')
  assert g['feature_net'] > 0
  assert all(v == 0 for k, v in g.items() if k != 'feature_net'), g
  config.objective.c_labels_hsic = 1.0
  g = _grads(config, 'c_labels_hsic')
  assert g['feature_net'] > 0
  assert all(v == 0 for k, v in g.items() if k != 'feature_net'), g
  # z leaves the look to c: E_phi moves, C_phi (f held fixed) does not.
  config.objective.z_features_hsic = 1.0
  g = _grads(config, 'z_features_hsic')
  assert g['encoder'] > 0
  assert all(v == 0 for k, v in g.items()
             if k not in ('encoder', 'to_gaussian')), g


def test_label_regions_by_hand():
  # Label 0 darkens a 2 x 2 patch of its examples; label 1 is on for every
  # example, so the batch cannot say where it acts (0).
  x = np.zeros((4, 4, 4, 3), np.float32)
  x[:2, :2, :2] = 1.0
  x[0, 3, 3] = 0.5                     # one example's own detail
  y1 = np.array([[1, 1], [1, 1], [0, 1], [0, 1]], np.float32)
  regions = np.asarray(objectives.label_regions(x, y1))
  expected = np.zeros((4, 4))
  expected[:2, :2] = 1.0               # |1 - 0| x 3 channels, over its max 3
  expected[3, 3] = 0.25
  np.testing.assert_allclose(regions[0], expected, atol=1e-6)
  np.testing.assert_allclose(regions[1], 0.0)


def _patch_batch():
  """8 x 8 images of two labels: label 0's examples draw a bright patch at
  pixels [2:4, 4:6] and a half-bright one at [6:8, 0:2] on a background 0.1
  brighter; label 1 is on in every example."""
  x = np.zeros((4, 8, 8, 1), np.float32)
  x[:2] += 0.1
  x[:2, 2:4, 4:6] = 1.0
  x[:2, 6:8, 0:2] = 0.1 + 0.4
  y1 = np.array([[1, 1], [1, 1], [0, 1], [0, 1]], np.float32)
  return x, y1


def test_latent_regions_by_hand():
  # 8 x 8 images on a 4 x 4 grid (2 x 2 pixel patches). Label 0 draws a bright
  # patch at grid position (1, 2) of its examples, whose backgrounds are also
  # 0.1 brighter everywhere (a nuisance every position shares, which the
  # median removes); a half-bright patch at (3, 0) is below the threshold.
  x, y1 = _patch_batch()
  regions = np.asarray(objectives.latent_regions(x, y1, 4))
  expected = np.zeros((2, 4, 4), bool)
  expected[0, 1, 2] = True             # label 1: on everywhere, no region
  np.testing.assert_array_equal(regions, expected)
  # Pooled: 0.1 everywhere but 1.0 at (1, 2) and 0.5 at (3, 0), over 1.0;
  # median 0.1, so (3, 0) is at (0.5 - 0.1) / 0.9 = 0.44 of the spread.
  np.testing.assert_array_equal(
      np.asarray(objectives.latent_regions(x, y1, 4, threshold=0.4))[0],
      np.isin(np.arange(16).reshape(4, 4), [6, 12]))
  # region_mask: the same patches as pixels, at either threshold.
  mask = np.zeros((8, 8), bool)
  mask[2:4, 4:6] = True
  np.testing.assert_array_equal(objectives.region_mask(x, y1, patch=2), mask)
  mask[6:8, 0:2] = True
  np.testing.assert_array_equal(
      objectives.region_mask(x, y1, patch=2, threshold=0.4), mask)
  with pytest.raises(ValueError, match='not a whole number of 3 x 3'):
    objectives.latent_regions(x, y1, 3)


def test_region_reconstruction_by_hand():
  # The images of test_latent_regions_by_hand on 2 x 2 patches: label 0's
  # region is the patch at grid position (1, 2), pixels [2:4, 4:6].
  x, y1 = _patch_batch()
  x_hat = x.copy()
  x_hat[0, 2, 4] += 1.0                # inside: squared error 1
  x_hat[3, 3, 5] -= 2.0                # inside, an example without it: 4
  x_hat[1, 0, 0] += 5.0                # outside: not counted
  # (1 + 4) over 4 pixels x 4 examples x 1 channel.
  np.testing.assert_allclose(
      objectives.region_reconstruction(x, x_hat, y1, patch=2), 5 / 16,
      rtol=1e-6)
  # No region (every example has both labels): 0, not a division by 0.
  np.testing.assert_allclose(objectives.region_reconstruction(
      x, x_hat, np.ones((4, 2), np.float32), patch=2), 0.0)
  with pytest.raises(ValueError, match='whole 3 x 3 patches'):
    objectives.region_reconstruction(x, x_hat, y1, patch=3)


@pytest.mark.parametrize('term', ['region_reconstruction', 'region_chroma'])
@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_region_terms_train_what_the_reconstruction_trains(name, term):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          f'objective.{term}': 1.0})
  g = _grads(config, term)
  assert g['decoder'] > 0 and g['feature_net'] > 0 and g['encoder'] > 0, g
  recon = _grads(config, 'reconstruction')
  assert {k for k, v in g.items() if v > 0} == {
      k for k, v in recon.items() if v > 0}


def test_region_chroma_by_hand():
  # The images of test_region_reconstruction_by_hand in three grey
  # channels: the region is pixels [2:4, 4:6] on 2 x 2 patches.
  x, y1 = _patch_batch()
  x = np.repeat(x, 3, axis=-1)
  x_hat = x.copy()
  x_hat[0, 2, 4] += 0.5                # inside, brighter but grey: chroma 0
  x_hat[1, 3, 5] += (1.0, 0.0, 0.0)    # inside, red: chroma (2, -1, -1) / 3
  x_hat[1, 0, 0] += (5.0, 0.0, 0.0)    # outside: not counted
  # (4 + 1 + 1) / 9 over 4 pixels x 4 examples x 3 channels.
  np.testing.assert_allclose(
      objectives.region_chroma(x, x_hat, y1, patch=2), (6 / 9) / 48,
      rtol=1e-6)
  # The reconstruction counts the brightness too: 3 x 0.25 + 1.
  np.testing.assert_allclose(
      objectives.region_reconstruction(x, x_hat, y1, patch=2), 1.75 / 48,
      rtol=1e-6)
  # One channel has no chroma; no region (every example has both labels): 0.
  np.testing.assert_allclose(objectives.region_chroma(
      x[..., :1], x_hat[..., :1], y1, patch=2), 0.0)
  np.testing.assert_allclose(objectives.region_chroma(
      x, x_hat, np.ones((4, 2), np.float32), patch=2), 0.0)
  with pytest.raises(ValueError, match='region_chroma.*whole 3 x 3 patches'):
    objectives.region_chroma(x, x_hat, y1, patch=3)


def test_region_masking_zeroes_z_where_the_label_acts():
  config = tiny_config(**{'model.region_masking': 1.0})
  setup = train.build(config)
  params = train.jit_init(setup)(jax.random.key(0)).params
  model, grid = setup.model, config.model.latent_grid
  size = config.data.image_size
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(4, grid, grid, config.model.code_dim)),
                  jnp.float32)
  y = jax.nn.one_hot(jnp.array([[1, 0], [1, 1], [0, 1], [0, 0]]), 2)
  c = tuple(jnp.asarray(rng.normal(size=(4, n)), jnp.float32)
            for n in model.feature_sizes)
  # Label 0 brightens the top-left patch of grid position (0, 0); label 1
  # the patch of (grid - 1, grid - 1).
  x = np.zeros((4, size, size, 3), np.float32)
  p = size // grid
  x[:2, :p, :p] = 1.0
  x[1:3, -p:, -p:] = 1.0
  run = lambda m, method, *a: m.apply(
      {'params': params}, *a, method=method,
      rngs={'sample': jax.random.key(1)})
  masked = run(model, lambda m, *a: m.train_decode(*a), z, y, c, x)
  # At rate 1 every example loses both labels' regions, whatever its y.
  by_hand = np.asarray(z).copy()
  by_hand[:, 0, 0] = 0.0
  by_hand[:, -1, -1] = 0.0
  np.testing.assert_allclose(
      masked, run(model, 'decode', jnp.asarray(by_hand), y, c), atol=1e-6)
  assert float(jnp.max(jnp.abs(masked - run(model, 'decode', z, y, c)))) > 1e-4
  # z outside the regions is all the decoder reads of z.
  grad = jax.grad(lambda z: jnp.sum(run(
      model, lambda m, *a: m.train_decode(*a), z, y, c, x) ** 2))(z)
  np.testing.assert_array_equal(np.asarray(grad)[:, 0, 0], 0.0)
  assert float(jnp.min(jnp.abs(grad[:, 1:-1]).sum((1, 2, 3)))) > 0
  with pytest.raises(ValueError, match='needs the images x'):
    run(model, lambda m, *a: m.train_decode(*a), z, y, c)
  # A config error for a z without a grid; stage one (a Gaussian z) is run
  # with the masking off.
  from cvqvae_jax import config_checks, two_step  # pylint: disable=g-import-not-at-top
  bad = tiny_config(**{'model.region_masking': 0.5, 'model.name': 'cgvae',
                       'stage_one.model': ''})
  with pytest.raises(ValueError, match="region_masking must be 0 for "
                     "model.name 'cgvae'"):
    config_checks.validate(bad)
  assert two_step.stage_one_config(config).model.region_masking == 0.0
  assert two_step.variant(config).endswith('+ z masked in the label regions')


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_encoder_masking_hides_the_label_regions_from_E_phi(name):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          'model.encoder_masking': True})
  setup = train.build(config)
  model, size = setup.model, config.data.image_size
  params = train.jit_init(setup)(jax.random.key(0)).params
  np.testing.assert_array_equal(params['encoder_region'], 0.0)  # until set
  assert model.initialises_from_data
  assert model.init_batches(config.batch_size) == 512 // config.batch_size
  fewer = train.build(tiny_config(**{'model.name': name, 'stage_one.model': '',
                                     'model.encoder_masking': True,
                                     'model.region_examples': 100,
                                     'model.region_threshold': 0.3})).model
  assert fewer.init_batches(32) == 4 and fewer.init_batches(100) == 1
  assert fewer.region_threshold == 0.3
  p = objectives.REGION_PATCH
  # Label 0 brightens the 4 x 4 patch at pixels [4:8, 8:12] of examples 0
  # and 1; label 1 is on everywhere, so it has no region. Example 2 is
  # unlabelled: its bright patch at [0:4, 0:4] is left out.
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.2, 0.2, (4, size, size, 3)).astype(np.float32)
  x[:2, p:2 * p, 2 * p:3 * p] = 1.0
  x[2, :p, :p] = 1.0
  labels = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
  batch = {'image': x, 'label': labels,
           'labelled': np.array([[1, 1], [1, 1], [0, 0], [1, 1]], bool)}
  params = model.init_from_batch(params, batch, jax.random.key(1))
  region = np.zeros((size, size), np.float32)
  region[p:2 * p, 2 * p:3 * p] = 1.0
  np.testing.assert_array_equal(params['encoder_region'], region)
  run = lambda method, *a: model.apply({'params': params}, *a, method=method)
  by_hand = np.where(region[None, :, :, None] > 0, 0.0, x)
  np.testing.assert_array_equal(run('encoder_input', x), by_hand)
  # What E_phi makes of x does not depend on the pixels inside the region,
  # and does on those outside, for any batch (one image included).
  y = jax.nn.one_hot(labels, 2)
  z_of = lambda x, y=y: model.apply(
      {'params': params}, x, y, method=lambda m, x, y: m.reencode(x, y))
  grad = np.asarray(jax.grad(lambda x: jnp.sum(z_of(x) ** 2))(jnp.asarray(x)))
  np.testing.assert_array_equal(grad * region[None, :, :, None], 0.0)
  assert np.abs(grad[:, :p]).sum((1, 2, 3)).min() > 0
  other = x.copy()
  other[:, p:2 * p, 2 * p:3 * p] = rng.uniform(-1, 1, (4, p, p, 3))
  np.testing.assert_allclose(z_of(jnp.asarray(other)), z_of(x), atol=1e-6)
  _, z = run('encode', jnp.asarray(other[:1]), y[:1])
  np.testing.assert_allclose(z, run('encode', x[:1], y[:1])[1], atol=1e-6)
  assert not np.allclose(z_of(jnp.asarray(x + 0.5 * (1 - region)[..., None])),
                         z_of(x))
  # The figure shows the images and what E_phi reads of them.
  from cvqvae_jax import figures  # pylint: disable=g-import-not-at-top
  rows = figures.encoder_region_rows(model, params, x)
  assert [title for title, _ in rows] == ['x', 'what E_phi reads']
  np.testing.assert_array_equal(rows[1][1], by_hand)
  # The region is never trained: no gradient of the loss reaches it.
  g = _grads(config, 'reconstruction')
  assert g['encoder_region'] == 0 and g['encoder'] > 0, g
  # A baseline's encoder reads no labels: a config error.
  bad = tiny_config(**{'model.name': 'm2', 'stage_one.model': '',
                       'model.encoder_masking': True})
  with pytest.raises(ValueError, match='encoder_masking must be False for '
                     "the baseline 'm2'"):
    config_checks.validate(bad)


def test_hidden_from_others_by_hand():
  regions = np.zeros((3, 2, 3), bool)
  regions[0, 0, :2] = True             # label 0: (0, 0), (0, 1)
  regions[1, 0, 1:] = True             # label 1: (0, 1), (0, 2)
  regions[2, 1, 0] = True              # label 2: (1, 0)
  hidden = np.asarray(objectives.hidden_from_others(jnp.asarray(regions)))
  want = np.zeros((3, 2, 3), bool)
  want[0, 0, 2] = want[0, 1, 0] = True   # the shared (0, 1) stays shown
  want[1, 0, 0] = want[1, 1, 0] = True
  want[2, 0, :] = True
  np.testing.assert_array_equal(hidden, want)
  # One label hides nothing.
  assert not np.asarray(objectives.hidden_from_others(
      jnp.asarray(regions[:1]))).any()


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_feature_masking_hides_the_other_labels_regions_from_each_c(name):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          'model.feature_masking': True,
                          'model.region_examples': 64})
  setup = train.build(config)
  model, size = setup.model, config.data.image_size
  params = train.jit_init(setup)(jax.random.key(0)).params
  np.testing.assert_array_equal(params['feature_regions'], 0.0)  # until set
  assert model.initialises_from_data and model.init_batches(32) == 2
  p = objectives.REGION_PATCH
  # Label 0 brightens the patch [0:4, 0:4], label 1 the patch [8:12, 8:12].
  rng = np.random.default_rng(0)
  labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
  x = rng.uniform(-0.2, 0.2, (4, size, size, 3)).astype(np.float32)
  x[labels[:, 0] == 1, :p, :p] = 1.0
  x[labels[:, 1] == 1, 2 * p:3 * p, 2 * p:3 * p] = 1.0
  batch = {'image': x, 'label': labels, 'labelled': np.ones((4, 2), bool)}
  params = model.init_from_batch(params, batch, jax.random.key(1))
  regions = np.zeros((2, size, size), np.float32)
  regions[0, :p, :p] = 1.0
  regions[1, 2 * p:3 * p, 2 * p:3 * p] = 1.0
  np.testing.assert_array_equal(params['feature_regions'], regions)
  # Label l's logits and c are C_phi's on x with the other label's region
  # set to 0, computed by hand.
  logits, c = model.apply({'params': params}, x, method='classify')
  net = lambda v: model.apply({'params': params}, v,
                              method=lambda m, v: m.feature_net(v))
  for l in range(2):
    seen = np.where(regions[1 - l][None, :, :, None] > 0, 0.0, x)
    want_logits, want_c = net(seen)
    np.testing.assert_allclose(logits[:, l], want_logits[:, l], atol=1e-5)
    np.testing.assert_allclose(c[l], want_c[l], atol=1e-5)
  # So c_l does not depend on the pixels of the other label's region, and
  # does on those of its own.
  for l in range(2):
    grad = np.asarray(jax.grad(lambda v, l=l: jnp.sum(model.apply(
        {'params': params}, v, method='classify')[1][l] ** 2))(jnp.asarray(x)))
    np.testing.assert_array_equal(grad * regions[1 - l][None, :, :, None], 0.0)
    assert np.abs(grad * regions[l][None, :, :, None]).sum() > 0
  # Without the option C_phi reads the whole image: the same network's
  # output differs.
  assert not np.allclose(net(x)[1][0], c[0])
  # The regions are never trained; C_phi is.
  g = _grads(config, 'reconstruction')
  assert g['feature_regions'] == 0 and g['feature_net'] > 0, g
  from cvqvae_jax import config_checks, two_step  # pylint: disable=g-import-not-at-top
  assert two_step.variant(config).endswith(
      "+ other labels' regions hidden from each c")
  bad = tiny_config(**{'model.name': 'm2', 'stage_one.model': '',
                       'model.feature_masking': True})
  with pytest.raises(ValueError, match='feature_masking must be False for '
                     "the baseline 'm2'"):
    config_checks.validate(bad)


def test_c_locality_by_hand():
  regions = np.zeros((2, 4, 4), np.float32)
  regions[0, :2, :2] = 1.0             # label 0 acts in the top-left corner
  regions[1, 2:, 2:] = 0.5             # label 1 half-acts bottom-right
  mean = np.zeros((2, 4, 4, 1), np.float32)
  own = mean.copy()
  own[0, 0, 0] = 2.0                   # inside label 0's region: 4 inside
  own[0, 3, 3] = 1.0                   # outside it: 1
  own[1, 3, 3] = 1.0                   # example 1 uses label 1 only: 1 x 0.5
  gate = np.array([[1, 0], [0, 1]], np.float32)
  # outside: 1 (example 0) + 0.5 (example 1); total 4 + 1 + 1.
  np.testing.assert_allclose(
      objectives.c_locality(own, mean, regions, gate), 1.5 / 6.0, rtol=1e-5)
  # The same share whatever the size of c's effect.
  np.testing.assert_allclose(
      objectives.c_locality(10 * own, mean, regions, gate), 1.5 / 6.0,
      rtol=1e-5)
  # With both labels gated on, example 0's (3, 3) is in label 1's half.
  np.testing.assert_allclose(
      objectives.c_locality(own, mean, regions, np.ones((2, 2), np.float32)),
      1.0 / 6.0, rtol=1e-5)


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae'])
def test_c_locality_trains_the_decoder_and_c_not_z(name):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          'model.feature_locality': True,
                          'objective.c_locality': 1.0})
  g = _grads(config, 'c_locality')
  assert g['decoder'] > 0 and g['feature_net'] > 0
  assert all(v == 0 for k, v in g.items()
             if k not in ('decoder', 'feature_net')), g
  config.model.feature_locality = False
  with pytest.raises(ValueError, match='objective.c_locality.*feature_locality'):
    config_checks.validate(config)


def test_other_labels_cka_by_hand():
  # Two labels on four examples. The first label's c copies the second
  # label (CKA 1 against it), the second's c splits the examples as the
  # first label does not (orthogonal: 0).
  y = jax.nn.one_hot(jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]]), 2)
  copies = jnp.array([[0.0], [1.0], [0.0], [1.0]])
  orthogonal = jnp.array([[0.0], [1.0], [0.0], [1.0]])
  np.testing.assert_allclose(
      objectives.other_labels_cka([copies, orthogonal], y), 1.0, rtol=1e-5)
  # One label: no other to know.
  assert float(objectives.other_labels_cka([copies], y[:, :1])) == 0.0


def test_film_starts_as_the_identity_and_gives_f_a_voice():
  from cvqvae_jax.models import cvqvae  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(2, 32)), jnp.float32)
  y = jax.nn.one_hot(jnp.array([[1], [0]]), 2)
  f = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
  plain = cvqvae.Decoder((8, 8), 8, 3)
  film = cvqvae.Decoder((8, 8), 8, 3, feature_film=True)
  params = film.init(jax.random.key(0), z, y, f)['params']
  assert {'film_0', 'film_1'} <= set(params)
  base = {k: v for k, v in params.items() if not k.startswith('film_')}
  np.testing.assert_allclose(film.apply({'params': params}, z, y, f),
                             plain.apply({'params': base}, z, y, f),
                             atol=1e-6)
  # Once its maps are not zero, f modulates the blocks: the image changes
  # where the same change of f without FiLM leaves it alone (f then reaches
  # only the dense layer, whose weights on f are zeroed here).
  def no_dense_f(p):
    kernel = p['dense']['kernel'].at[-f.shape[1]:].set(0.0)
    return {**p, 'dense': {**p['dense'], 'kernel': kernel}}
  keys = iter(jax.random.split(jax.random.key(1), 8))
  bumped = no_dense_f({
      k: (jax.tree.map(lambda w: 0.3 * jax.random.normal(next(keys), w.shape),
                       v) if k.startswith('film_') else v)
      for k, v in params.items()})
  assert float(jnp.max(jnp.abs(
      film.apply({'params': bumped}, z, y, f)
      - film.apply({'params': bumped}, z, y, f + 1.0)))) > 1e-3
  unbumped = no_dense_f(params)
  np.testing.assert_allclose(film.apply({'params': unbumped}, z, y, f),
                             film.apply({'params': unbumped}, z, y, f + 1.0))


def test_the_recipe_names_its_extensions():
  from cvqvae_jax import two_step  # pylint: disable=g-import-not-at-top
  assert two_step.variant(tiny_config()) == 'E (CVQVAE, two-step)'
  config = tiny_config(**{'objective.z_mmd': 1.0,
                          'objective.swap_z_cycle': 0.5})
  assert two_step.variant(config) == ('E (CVQVAE, two-step) + MMD of z across '
                                      'y + swap z cycle')
  config = tiny_config(**{'objective.z_hsic': 1.0, 'model.feature_film': True})
  assert two_step.variant(config) == ('E (CVQVAE, two-step) + HSIC of z and y'
                                      ' + FiLM of f(y, c)')


def test_token_dropout_hides_the_label_from_the_decoder_tokens():
  from cvqvae_jax import models  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'model.token_dropout': 1.0})
  setup = train.build(config)
  params = train.jit_init(setup)(jax.random.key(0)).params
  model = setup.model
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(4, config.model.latent_grid,
                                   config.model.latent_grid,
                                   config.model.code_dim)), jnp.float32)
  y = jax.nn.one_hot(jnp.array([[0, 1], [1, 0], [1, 1], [0, 0]]), 2)
  c = tuple(jnp.asarray(rng.normal(size=(4, n)), jnp.float32)
            for n in model.feature_sizes)
  run = lambda m, method, **kw: m.apply(
      {'params': params}, z, y, c, method=method,
      rngs={'sample': jax.random.key(1)}, **kw)
  dropped = run(model, lambda m, *a: m.train_decode(*a))
  half = jnp.full_like(y, 0.5)
  np.testing.assert_allclose(
      dropped, run(model, lambda m, *a: m.decode(*a, token_y=half)),
      atol=1e-6)
  assert float(jnp.max(jnp.abs(dropped - run(model, 'decode')))) > 1e-4
  # At rate 0 a training decode is the plain one (and draws no randomness).
  plain = models.for_config(tiny_config(), (16, 16, 3))
  np.testing.assert_allclose(run(plain, lambda m, *a: m.train_decode(*a)),
                             run(plain, 'decode'), atol=0)


def test_checkpoints_from_before_an_extension_load_with_it_off():
  from cvqvae_jax import checkpointing  # pylint: disable=g-import-not-at-top
  old = {'model': {'name': 'cvqvae', 'num_codes': 8}}
  off = {'model': {'name': 'cvqvae', 'num_codes': 8, 'feature_film': False,
                   'token_dropout': 0.0}}
  assert checkpointing.describe_differences(old, off) == []
  on = {'model': {'name': 'cvqvae', 'num_codes': 8, 'feature_film': True}}
  assert checkpointing.describe_differences(old, on) == [
      "model.feature_film: checkpoint '<absent>', config True"]
  other = {'model': {'name': 'cvqvae', 'num_codes': 0}}
  assert checkpointing.describe_differences(old, other) == [
      'model.num_codes: checkpoint 8, config 0']


def test_the_default_config_names_its_recipes():
  # '' is the paper's (every extension off); 'hsic_film' turns on exactly its
  # four fields, and the summary names them; an unknown name says which exist.
  from cvqvae_jax import two_step  # pylint: disable=g-import-not-at-top
  from conftest import default  # pylint: disable=g-import-not-at-top
  assert two_step.extensions(default.get_config()) == []
  config = default.get_config('hsic_film')
  assert two_step.variant(config) == (
      'E (CVQVAE, two-step) + HSIC of z and y + HSIC of c and z + HSIC of c '
      'and the other labels + FiLM of f(y, c)')
  assert (config.objective.z_hsic, config.objective.c_hsic,
          config.objective.c_labels_hsic) == (0.1, 0.1, 0.1)
  masked = default.get_config('masked')
  assert two_step.variant(masked) == two_step.variant(config) + (
      ' + z masked in the label regions + stage-one E_phi and D_theta kept')
  assert (masked.model.region_masking, masked.stage_one.warm_start) == (
      0.5, True)
  hidden = default.get_config('hidden')
  assert two_step.variant(hidden) == (
      'E (CVQVAE, two-step) + HSIC of z and y + HSIC of c and z + HSIC of c '
      'and the other labels + reconstruction weighted in the label regions '
      '+ FiLM of f(y, c) + label regions hidden from E_phi + stage-one E_phi '
      'and D_theta kept')
  assert (hidden.model.region_threshold, hidden.model.region_examples) == (
      0.2, 2048)
  chroma = default.get_config('chroma')
  assert two_step.variant(chroma) == two_step.variant(hidden).replace(
      'label regions + FiLM',
      'label regions + chroma of the label regions + FiLM')
  assert chroma.objective.region_chroma == 20.0
  own = default.get_config('own')
  assert two_step.variant(own) == two_step.variant(chroma).replace(
      'from E_phi +', "from E_phi + other labels' regions hidden from each c +")
  assert (own.model.feature_masking, own.lr_schedule, own.learning_rate,
          own.warmup_steps, own.model.num_codes) == (True, 'cosine', 2e-3, 250,
                                                     512)
  assert default.get_config().lr_schedule == 'constant'
  for name, recipe in (('hsic_film', config), ('masked', masked),
                       ('hidden', hidden), ('chroma', chroma), ('own', own)):
    paper = default.get_config().to_dict()
    for path in default.RECIPES[name]:
      *sections, field = path.split('.')
      mine, theirs = paper, recipe
      for section in sections:
        mine, theirs = mine[section], theirs[section]
      mine[field] = theirs[field]
    assert paper == recipe.to_dict()
  with pytest.raises(ValueError, match="Unknown recipe 'nope'.*hsic_film"):
    default.get_config('nope')
