"""The objective's pure functions against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import objectives


def test_kl_to_uniform_matches_hand_computed_value():
  p = np.array([0.5, 0.25, 0.25])
  entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
  expected = math.log(3) - entropy  # = 0.05889...
  kl = objectives.categorical_kl_to_uniform(jnp.log(jnp.asarray(p)) + 7.0)
  np.testing.assert_allclose(kl, expected, rtol=1e-6)
  np.testing.assert_allclose(expected, 0.0588915, atol=1e-6)


def test_kl_bounds_uniform_and_one_hot():
  k = 512
  assert float(objectives.categorical_kl_to_uniform(jnp.zeros(k))) == 0.0
  one_hot = jnp.full((k,), -jnp.inf).at[3].set(0.0)
  np.testing.assert_allclose(objectives.categorical_kl_to_uniform(one_hot),
                             math.log(k), rtol=1e-6)


@pytest.mark.parametrize('logits', [
    [1e30, -1e30, 0.0],
    [-1e38, -1e38, 3e38],
    [0.0, -np.inf, -np.inf],
    [1e4, 1e4, -1e4],
])
def test_kl_is_finite_for_extreme_logits_with_finite_gradient(logits):
  logits = jnp.asarray(logits, jnp.float32)
  kl = objectives.categorical_kl_to_uniform(logits)
  assert np.isfinite(kl) and 0.0 <= kl <= math.log(3) + 1e-6
  grad = jax.grad(objectives.categorical_kl_to_uniform)(logits)
  assert np.all(np.isfinite(grad))


def test_kl_shapes_last_axis_is_k():
  logits = jax.random.normal(jax.random.key(0), (2, 8, 8, 16)) * 3
  kl = objectives.categorical_kl_to_uniform(logits)
  assert kl.shape == (2, 8, 8)
  # Batch reduction of the loss: sum over positions, mean over the batch.
  np.testing.assert_allclose(objectives.categorical_kl_loss(logits),
                             kl.reshape(2, -1).sum(-1).mean(), rtol=1e-6)


def test_classification_loss_averages_over_labelled_examples_only():
  logits = jnp.log(jnp.array([[[0.8, 0.2]], [[0.4, 0.6]], [[0.5, 0.5]]]))
  labels = jnp.array([[0], [0], [1]])
  labelled = jnp.array([[True], [True], [False]])
  expected = -(math.log(0.8) + math.log(0.4)) / 2
  np.testing.assert_allclose(
      objectives.classification_loss(logits, labels, labelled), expected,
      rtol=1e-6)
  assert float(objectives.classification_loss(logits, labels,
                                               labelled & False)) == 0.0


def test_codebook_and_commitment_gradients_go_to_one_side_each():
  z_e = jnp.array([[1.0, 2.0]])
  code = jnp.array([[0.0, 0.0]])
  cb, cm = objectives.codebook_losses(z_e, code)
  np.testing.assert_allclose([cb, cm], [2.5, 2.5])
  g_cb = jax.grad(lambda z, e: objectives.codebook_losses(z, e)[0],
                  argnums=(0, 1))(z_e, code)
  g_cm = jax.grad(lambda z, e: objectives.codebook_losses(z, e)[1],
                  argnums=(0, 1))(z_e, code)
  np.testing.assert_array_equal(g_cb[0], 0.0)
  np.testing.assert_allclose(g_cb[1], [[-1.0, -2.0]])
  np.testing.assert_allclose(g_cm[0], [[1.0, 2.0]])
  np.testing.assert_array_equal(g_cm[1], 0.0)


def test_gaussian_kl_matches_closed_form():
  mean, log_var = jnp.array([1.0, 0.0]), jnp.array([0.0, math.log(4.0)])
  expected = 0.5 * (1.0 + 0.0) + 0.5 * (4.0 - 1.0 - math.log(4.0))
  np.testing.assert_allclose(objectives.gaussian_kl_to_standard(mean, log_var),
                             expected, rtol=1e-6)


class _Weights:  # config.objective's three weights
  beta, alpha, commitment = 0.1, 2.0, 0.25


def test_weighted_loss_is_eq6_plus_the_three_terms():
  terms = {'reconstruction': jnp.float32(1.0), 'kl': jnp.float32(10.0),
           'classification': jnp.float32(0.5), 'codebook': jnp.float32(0.3),
           'commitment': jnp.float32(0.4)}
  # 1 + 0.1 * 10 + 2 * 0.5 + 0.3 + 0.25 * 0.4
  np.testing.assert_allclose(objectives.weighted_loss(terms, _Weights), 3.4,
                             rtol=1e-6)
  # A model without a codebook (the Gaussian ones): those terms count 0.
  del terms['codebook'], terms['commitment']
  np.testing.assert_allclose(objectives.weighted_loss(terms, _Weights), 3.0,
                             rtol=1e-6)


def test_shared_terms_of_a_hand_made_batch():
  x = jnp.zeros((2, 2, 2, 1))
  x_hat = x.at[0].set(1.0)  # squared error 1 on half of the pixels
  logits = jnp.log(jnp.array([[[0.8, 0.2]], [[0.4, 0.6]]]))
  batch = {'image': x, 'label': jnp.array([[0], [1]]),
           'labelled': jnp.array([[True], [False]])}
  terms = objectives.shared_terms(batch, {'x_hat': x_hat, 'logits_y': logits})
  np.testing.assert_allclose(terms['reconstruction'], 0.5, rtol=1e-6)
  np.testing.assert_allclose(terms['classification'], -math.log(0.8),
                             rtol=1e-6)


def test_constant_kl_of_the_one_hot_posterior():
  # VQ-VAE's one-hot q has KL log K at each position, as the general formula
  # gives for one-hot logits.
  one_hot = jnp.full((1, 4, 4, 16), -jnp.inf).at[..., 3].set(0.0)
  np.testing.assert_allclose(objectives.constant_categorical_kl(16, 16),
                             objectives.categorical_kl_loss(one_hot),
                             rtol=1e-6)
  np.testing.assert_allclose(objectives.constant_categorical_kl(16, 16),
                             16 * math.log(16), rtol=1e-6)


class _AllWeights:  # every field objectives.TERMS names
  beta, alpha, commitment, beta_features = 0.1, 2.0, 0.25, 3.0
  z_invariance, z_mmd, swap_z_cycle = 0.5, 0.01, 1.0
  z_hsic, c_hsic, c_labels_hsic = 0.1, 0.2, 0.3
  swap_c_cycle, swap_classification = 0.1, 2.0
  swap_z_invariance, z_features_hsic = 0.5, 0.4
  c_locality, region_reconstruction, region_chroma = 0.7, 0.6, 0.5


def test_every_weight_comes_from_the_table():
  assert objectives.weight_fields() == (
      'beta', 'alpha', 'commitment', 'beta_features', 'z_invariance', 'z_mmd',
      'z_hsic', 'c_hsic', 'c_labels_hsic', 'z_features_hsic', 'swap_z_cycle',
      'swap_c_cycle', 'swap_classification', 'swap_z_invariance',
      'c_locality', 'region_reconstruction', 'region_chroma')
  terms = {name: jnp.float32(i + 1.0)
           for i, name in enumerate(objectives.TERMS)}
  # recon 1 + 0.1 kl 2 + 0.1 kl_z 3 + 2 class 4 + codebook 5
  # + 0.25 commitment 6 + 0.1 kl_y 7 + 3 kl_c 8 (= 40.7), then the
  # extensions: z_adversary 9 (fixed 1) + 0.5 z_invariance 10
  # + 0.01 z_mmd 11 + 0.1 z_hsic 12 + 0.2 c_hsic 13 + 0.3 c_labels_hsic 14
  # + 0.4 z_features_hsic 15 + 1 swap_z_cycle 16 + 0.1 swap_c_cycle 17
  # + 2 swap_classification 18 + 0.5 swap_z_invariance 19 + 0.7 c_locality 20
  # (= 9 + 5 + 0.11 + 1.2 + 2.6 + 4.2 + 6 + 16 + 1.7 + 36 + 9.5 + 14 = 105.31)
  # + 0.6 region_reconstruction 21 (= 12.6) + 0.5 region_chroma 22 (= 11)
  np.testing.assert_allclose(objectives.weighted_loss(terms, _AllWeights),
                             169.61, rtol=1e-6)
  assert objectives.weight('kl_c', _AllWeights) == 3.0
  assert objectives.weight('codebook', _AllWeights) == 1.0


def test_complete_logs_every_row_and_the_kl_of_a_split_kl():
  # JDVAE's terms: the KL of z and of c with their own weights, logged
  # together as 'kl'.
  terms = {'reconstruction': jnp.float32(1.0), 'classification':
           jnp.float32(0.5), 'kl_z': jnp.float32(10.0),
           'kl_c': jnp.float32(2.0)}
  done = objectives.complete(terms, _AllWeights)
  assert set(done) == set(objectives.logged_terms())
  np.testing.assert_allclose(done['loss'], 1 + 1.0 + 1.0 + 6.0, rtol=1e-6)
  np.testing.assert_allclose(done['kl'], 12.0, rtol=1e-6)
  assert float(done['codebook']) == float(done['kl_y']) == 0.0
  # A model with its own bound returns 'loss', and only such a model does.
  own = objectives.complete({**terms, 'loss': jnp.float32(7.0)}, _AllWeights,
                            own_bound=True)
  assert float(own['loss']) == 7.0
  with pytest.raises(ValueError, match='own_bound'):
    objectives.complete(terms, _AllWeights, own_bound=True)
  with pytest.raises(ValueError, match='own_bound'):
    objectives.complete({**terms, 'loss': jnp.float32(7.0)}, _AllWeights)


def test_a_registered_term_is_weighted_logged_and_checked(monkeypatch):
  """Adding a term: one function (here, inside a model's loss_terms) and
  one row of objectives.TERMS; train's loss, metrics and finite check
  follow."""
  from cvqvae_jax import train  # pylint: disable=g-import-not-at-top
  from cvqvae_jax.models import cgvae  # pylint: disable=g-import-not-at-top
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(objectives.TERMS, 'extra', objectives.Term('alpha'))
  assert 'extra' in objectives.logged_terms()

  class WithExtra(cgvae.CGVAE):
    value: float = 0.75

    def loss_terms(self, out, batch, objective):
      terms = super().loss_terms(out, batch, objective)
      terms['extra'] = jnp.float32(self.value)
      return terms

  config = tiny_config(**{'model.name': 'cgvae2'})
  model = WithExtra(image_size=16, channels=3, feature_kinds=('presence',),
                    encoder_widths=(8,) * 5, feature_widths=(8,) * 5,
                    decoder_widths=(8,) * 5, latent_grid=4, code_dim=4,
                    num_features=3, latent_size=8, adain=False)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1)
  labels = jnp.array([[0], [1]])
  batch = {'image': x, 'label': labels, 'labelled': labels >= 0}
  params = model.init({'params': jax.random.key(1),
                       'sample': jax.random.key(2)}, x, labels, labels >= 0,
                      train=True)['params']
  loss, metrics = train.loss_fn(params, batch, jax.random.key(3), 0,
                                model=model, objective=config.objective)
  without = {k: v for k, v in metrics.items() if k in
             ('reconstruction', 'kl', 'classification')}
  np.testing.assert_allclose(
      loss, objectives.weighted_loss(without, config.objective)
      + config.objective.alpha * 0.75, rtol=1e-6)
  assert float(metrics['extra']) == 0.75
  assert objectives.first_non_finite(jax.device_get(metrics)) is None
  _, bad = train.loss_fn(params, batch, jax.random.key(3), 0,
                         model=model.clone(value=float('nan')),
                         objective=config.objective)
  name, value = objectives.first_non_finite(jax.device_get(bad))
  assert name == 'loss' and math.isnan(value)  # 'loss' is checked first
  assert math.isnan(float(bad['extra']))
  assert objectives.first_non_finite({'loss': 1.0, 'extra': float('inf')}
                                     ) == ('extra', float('inf'))
