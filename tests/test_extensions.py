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
         'swap_logits_read': jnp.array([[[0.0, math.log(3.0)]]])}
  terms = objectives.swap_consistency_terms(out)
  np.testing.assert_allclose(terms['swap_z_cycle'], 4.0)
  np.testing.assert_allclose(terms['swap_c_cycle'], 0.5)
  np.testing.assert_allclose(terms['swap_classification'], -math.log(0.75),
                             rtol=1e-6)
  assert objectives.swap_consistency_terms({}) == {}


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
  for weight in ('z_invariance', 'z_mmd', 'swap_z_cycle', 'swap_c_cycle',
                 'swap_classification'):
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


def test_the_recipe_names_its_extensions():
  from cvqvae_jax import two_step  # pylint: disable=g-import-not-at-top
  assert two_step.variant(tiny_config()) == 'E (CVQVAE, two-step)'
  config = tiny_config(**{'objective.z_mmd': 1.0,
                          'objective.swap_z_cycle': 0.5})
  assert two_step.variant(config) == ('E (CVQVAE, two-step) + MMD of z across '
                                      'y + swap z cycle')
