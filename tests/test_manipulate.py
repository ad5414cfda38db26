"""Swaps move exactly one label's y and c (paper 3: fake+ and fake-)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cvqvae_jax import evaluation
from cvqvae_jax import manipulate
from cvqvae_jax.models import create_model

from conftest import tiny_config


def _codes(value, y):
  return {'y': jax.nn.one_hot(jnp.array(y), 2),
          'c': (jnp.full((2, 3), value), jnp.full((2, 6), value + 0.5)),
          'z_q': jnp.full((2, 4, 4, 4), value)}


def test_swap_label_takes_only_that_labels_y_and_c_from_the_donor():
  base, donor = _codes(1.0, [[0, 0], [0, 1]]), _codes(2.0, [[1, 1], [1, 0]])
  fake = manipulate.swap_label(base, donor, 0)
  np.testing.assert_array_equal(fake['y'][:, 0], donor['y'][:, 0])
  np.testing.assert_array_equal(fake['y'][:, 1], base['y'][:, 1])
  np.testing.assert_array_equal(fake['c'][0], donor['c'][0])
  np.testing.assert_array_equal(fake['c'][1], base['c'][1])
  np.testing.assert_array_equal(fake['z_q'], base['z_q'])
  np.testing.assert_array_equal(base['y'][:, 0, 1], 0)  # inputs unchanged


def _tiny_model_and_params():
  config = tiny_config()
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=('presence', 'both'))
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1)
  labels = jnp.array([[1, 1], [1, 1]])
  rngs = {'params': jax.random.key(1), 'sample': jax.random.key(2)}
  params = jax.jit(functools.partial(model.init, train=True))(
      rngs, x, labels, labels > 0)['params']
  return model, params, x, labels


def test_swap_with_itself_is_the_reconstruction():
  model, params, x, _ = _tiny_model_and_params()
  labels = jnp.array([[1, 0], [0, 1]])
  codec = evaluation.Codec(model)  # jitted manipulate.encode / decode
  recon = codec.decode(params, codec.encode(params, x, labels))
  same = codec.swap(params, x, x, labels, labels, 1)
  np.testing.assert_allclose(same, recon, atol=1e-6)
  other = codec.swap(params, x, x[::-1], labels, labels[::-1], 0)
  assert float(jnp.abs(other - recon).max()) > 1e-4
  # The un-jitted functions give the same images.
  np.testing.assert_allclose(
      manipulate.swap(model, params, x, x[::-1], 0, labels, labels[::-1]),
      other, atol=1e-5)


def test_interpolation_scaling_and_difference_map_take_and_give_images():
  model, params, x, labels = _tiny_model_and_params()
  recon1 = manipulate.decode(model, params,
                             manipulate.encode(model, params, x, labels))
  x2 = x[::-1]
  frames = jax.jit(functools.partial(manipulate.interpolate_features, model),
                   static_argnames='label')(
                       params, x, x2, label=0, alphas=jnp.array([0., 1.]),
                       labels1=labels, labels2=labels)
  assert frames.shape == (2, 2, 16, 16, 3)
  # alpha = 0 is x1's reconstruction; alpha = 1 is the swap of c (same y).
  np.testing.assert_allclose(frames[0], recon1, atol=1e-5)
  np.testing.assert_allclose(
      frames[1], manipulate.swap(model, params, x, x2, 0, labels, labels),
      atol=1e-5)
  scaled = manipulate.scale_features(model, params, x, 1, [0.0, 1.0], labels)
  np.testing.assert_allclose(scaled[1], recon1, atol=1e-5)
  assert float(jnp.abs(scaled[0] - recon1).max()) > 1e-4
  recon, without, diff = manipulate.difference_map(model, params, x, 0,
                                                   labels)
  np.testing.assert_allclose(recon, recon1, atol=1e-5)
  np.testing.assert_allclose(diff, jnp.abs(recon - without).mean(-1),
                             atol=1e-6)
  assert diff.shape == (2, 16, 16) and float(diff.max()) > 0
  # With y already 0, "without" changes nothing.
  zeros = jnp.zeros_like(labels)
  _, _, none = manipulate.difference_map(model, params, x, 0, zeros)
  np.testing.assert_allclose(none, 0.0, atol=1e-6)


def test_swap_label_moves_several_labels_at_once():
  base, donor = _codes(1.0, [[0, 0], [0, 1]]), _codes(2.0, [[1, 1], [1, 0]])
  both = manipulate.swap_label(base, donor, (0, 1))
  one_then_other = manipulate.swap_label(manipulate.swap_label(base, donor, 0),
                                         donor, 1)
  for key in ('y', 'z_q'):
    np.testing.assert_array_equal(both[key], one_then_other[key])
  np.testing.assert_array_equal(both['y'], donor['y'])
  for got, want in zip(both['c'], donor['c']):
    np.testing.assert_array_equal(got, want)


def test_codec_matches_the_pure_functions():
  model, params, x, labels = _tiny_model_and_params()
  codec = manipulate.Codec(model)
  x2, labels2 = x[::-1], jnp.array([[0, 1], [1, 0]])
  np.testing.assert_allclose(
      codec.swap(params, x, x2, labels, labels2, (0, 1)),
      manipulate.swap(model, params, x, x2, (0, 1), labels, labels2),
      atol=1e-5)
  codes = manipulate.encode(model, params, x, labels)
  np.testing.assert_allclose(
      codec.set_label(params, x, labels, 0, 0),
      manipulate.decode(model, params, manipulate.set_label(codes, 0, 0)),
      atol=1e-5)
  np.testing.assert_allclose(codec.reconstruct(params, x, labels),
                             manipulate.decode(model, params, codes),
                             atol=1e-5)
  recon, without, diff = codec.difference(params, x, 0, labels=labels)
  np.testing.assert_allclose(without, codec.set_label(params, x, labels, 0, 0),
                             atol=1e-5)
  assert diff.shape == (2, 16, 16)
  frames = codec.interpolate(params, x, x2, 1, jnp.array([0.0, 1.0]),
                             labels1=labels, labels2=labels)
  np.testing.assert_allclose(frames[0], recon, atol=1e-5)
  scaled = codec.scale(params, x, 1, jnp.array([1.0]), labels=labels)
  np.testing.assert_allclose(scaled[0], recon, atol=1e-5)
