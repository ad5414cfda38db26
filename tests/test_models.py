"""Shapes, parameter trees and the paper's behaviour of every module."""

import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import models
from cvqvae_jax import objectives
from cvqvae_jax.models import MODEL_NAMES
from cvqvae_jax.models import contract
from cvqvae_jax.models import cvqvae
from cvqvae_jax.models import layers
from cvqvae_jax.models import create_model

from conftest import tiny_config

KINDS = ('presence', 'both')


def _apply(model, variables, *args, **kwargs):
  """model.apply, compiled: one XLA program instead of op-by-op dispatch."""
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, *args)


def _init(module, *args, **kwargs):
  init = jax.jit(functools.partial(module.init, **kwargs))
  return init({'params': jax.random.key(0), 'sample': jax.random.key(1)},
              *args)


@pytest.mark.parametrize('resample,size_out', [('down', 4), ('up', 16),
                                               ('none', 8)])
def test_res_block_shapes_and_shortcut(resample, size_out):
  x = jnp.ones((2, 8, 8, 5))
  block = layers.ResBlock(7, resample)
  variables = _init(block, x)
  assert block.apply(variables, x).shape == (2, size_out, size_out, 7)
  assert 'shortcut' in variables['params']
  assert variables['params']['shortcut']['kernel'].shape == (1, 1, 5, 7)
  assert 'bias' not in variables['params']['shortcut']
  same = _init(layers.ResBlock(5, resample), x)
  assert 'shortcut' not in same['params']


def _shapes(tree):
  return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(tree))


def test_res_block_with_style_uses_adain():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  style = jnp.ones((2, 10))
  block = layers.ResBlock(3, 'up')
  variables = _init(block, x, style)
  # Before each activation an AdaIN: the style (10) -> (gamma, beta) of the
  # 3 channels.
  assert set(variables['params']) >= {'adain_1', 'adain_2'}
  assert _shapes(variables['params']['adain_1']) == [(6,), (10, 6)]
  out = lambda s: block.apply(variables, x, s)
  assert np.abs(np.asarray(out(style) - out(-style))).max() > 1e-3
  assert 'adain_1' not in _init(block, x)['params']  # No style, no AdaIN.


def test_adain_output_is_instance_normalised_then_modulated():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4)) * 3 + 1
  style = jnp.zeros((2, 5))
  module = layers.AdaIN()
  params = _init(module, x, style)
  out = module.apply(params, x, style)  # zero style + zero bias -> plain IN
  np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_label_tokens_select_by_y_and_mix_relaxed_y():
  tokens = layers.LabelTokens((3, 3))
  y = jax.nn.one_hot(jnp.array([[0, 1], [1, 0]]), 2)
  variables = _init(tokens, y)
  table = variables['params']['table']
  assert table.shape == (2, 2, 3, 3)  # (labels, values of y, H, W)
  out = tokens.apply(variables, y)
  assert out.shape == (2, 3, 3, 2)
  np.testing.assert_allclose(out[0, ..., 0], table[0, 0])
  np.testing.assert_allclose(out[0, ..., 1], table[1, 1])
  np.testing.assert_allclose(out[1, ..., 0], table[0, 1])
  soft = jnp.array([[[0.25, 0.75], [0.5, 0.5]]])
  mixed = tokens.apply(variables, soft)
  np.testing.assert_allclose(mixed[0, ..., 0],
                             0.25 * table[0, 0] + 0.75 * table[0, 1],
                             rtol=1e-6)
  scalar = layers.LabelTokens(())
  sv = _init(scalar, y)
  assert sv['params']['table'].shape == (2, 2)
  assert scalar.apply(sv, y).shape == (2, 2)


def test_presence_features_are_null_for_y0():
  c = jnp.arange(1.0, 7.0).reshape(2, 3)
  f = layers.combine_features(jnp.array([0.0, 1.0]), c, 'presence')
  np.testing.assert_array_equal(f[0], 0.0)
  np.testing.assert_array_equal(f[1], c[1])


def test_both_features_mask_the_half_of_the_other_value():
  c = jnp.arange(1.0, 9.0).reshape(2, 4)  # N_c = 2: [c0 | c1]
  f = layers.combine_features(jnp.array([0.0, 1.0]), c, 'both')
  np.testing.assert_array_equal(f[0], [1.0, 2.0, 0.0, 0.0])
  np.testing.assert_array_equal(f[1], [0.0, 0.0, 7.0, 8.0])
  half = layers.combine_features(jnp.array([0.5]), c[:1], 'both')
  np.testing.assert_allclose(half[0], [0.5, 1.0, 1.5, 2.0])
  with pytest.raises(ValueError, match='presence'):
    layers.combine_features(jnp.array([1.0]), c[:1], 'sometimes')


def test_feature_kinds_follow_the_config_table():
  config = tiny_config()
  assert models.feature_kinds(config) == ('presence', 'both')
  config.data.labels = ('smile', 'cardiomegaly')
  assert models.feature_kinds(config) == ('both', 'presence')
  with pytest.raises(ValueError, match="Unknown feature kind 'neither'"):
    layers.feature_size('neither', 3)


def test_codebook_logits_are_minus_euclidean_distance():
  book = cvqvae.Codebook(num_codes=5, code_dim=3, init_method='uniform')
  z = jax.random.normal(jax.random.key(4), (2, 3))
  variables = book.init(jax.random.key(0), jnp.zeros((1, 5)))
  e = np.asarray(variables['params']['embedding'])
  assert e.shape == (5, 3) and np.abs(e).max() <= 1 / 5
  logits = book.apply(variables, z, method='logits')
  expected = -np.linalg.norm(np.asarray(z)[:, None] - e[None], axis=-1)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_normal_codebook_init_has_the_configured_scale():
  book = cvqvae.Codebook(num_codes=4096, code_dim=4, init_method='normal',
                         init_scale=3.0)
  e = book.init(jax.random.key(0), jnp.zeros((1, 4096)))['params']['embedding']
  np.testing.assert_allclose(np.std(e), 3.0, rtol=0.03)
  with pytest.raises(ValueError, match='codebook init'):
    cvqvae.Codebook(4, 2, init_method='zeros').init(jax.random.key(0),
                                             jnp.zeros((1, 4)))


def test_auto_codebook_init_is_vq_vae_s_for_argmin_and_data_for_eq4():
  chosen = {}
  for name in ('vq_argmin', 'vq_entropy', 'cvqvae'):
    config = tiny_config(**{'model.name': name})
    assert config.model.codebook_init == 'auto'
    chosen[name] = create_model(config.model, image_size=16, channels=3,
                                feature_kinds=KINDS).codebook_init
  assert chosen == {'vq_argmin': 'uniform', 'vq_entropy': 'data',
                    'cvqvae': 'data'}
  config = tiny_config(**{'model.name': 'vq_argmin',
                          'model.codebook_init': 'normal'})
  assert create_model(config.model, image_size=16, channels=3,
                      feature_kinds=KINDS).codebook_init == 'normal'


@pytest.fixture(scope='module')
def tiny_model():
  config = tiny_config()
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=KINDS)
  x = jax.random.uniform(jax.random.key(5), (3, 16, 16, 3), minval=-1)
  labels = jnp.array([[0, 1], [1, 0], [1, 1]])
  variables = _init(model, x, labels, labels > 5, train=True)
  return config, model, variables['params'], x, labels


def test_cvqvae_parameter_tree_and_shapes(tiny_model):
  config, model, params, x, labels = tiny_model
  assert set(params) == {'feature_net', 'encoder', 'codebook', 'decoder'}
  assert params['codebook']['embedding'].shape == (16, 4)
  # E_phi: 16 px -> N_z 4 is two downsamplings; token images per block input.
  token_sizes = [params['encoder'][f'tokens_{i}']['table'].shape
                 for i in range(5)]
  assert token_sizes == [(2, 2, 16, 16), (2, 2, 8, 8)] + [(2, 2, 4, 4)] * 3
  # D_theta: scalar token per label and value; dense input = N_z^2 D + L + f.
  assert params['decoder']['scalar_tokens']['table'].shape == (2, 2)
  f_size = 3 + 2 * 3  # presence N_c, both 2 N_c
  assert params['decoder']['dense']['kernel'].shape == (16 * 4 + 2 + f_size,
                                                        16 * 8)
  dec_tokens = [params['decoder'][f'tokens_{i}']['table'].shape[-1]
                for i in range(5)]
  assert dec_tokens == [4, 4, 4, 4, 8]  # extra blocks at 4x4, then 2 ups
  head = params['feature_net']['head']['kernel']
  assert head.shape[-1] == 2 * 2 + f_size
  out = _apply(model, {'params': params}, x, labels, labels > 5, train=True,
                    rngs={'sample': jax.random.key(6)})
  assert out['x_hat'].shape == x.shape
  assert float(jnp.abs(out['x_hat']).max()) <= 1.0
  assert out['z_e'].shape == (3, 4, 4, 4)
  assert out['z_logits'].shape == (3, 4, 4, 16)
  assert out['logits_y'].shape == (3, 2, 2)
  assert [c.shape for c in out['c']] == [(3, 3), (3, 6)]


def test_z_q_is_the_sampled_code_and_gradient_is_copied_to_z_e(tiny_model):
  _, model, params, x, labels = tiny_model
  out = _apply(model, {'params': params}, x, labels, labels >= 0, train=True,
                    rngs={'sample': jax.random.key(7)})
  e = params['codebook']['embedding']
  np.testing.assert_allclose(out['z_q'], e[out['z_index']], atol=1e-6)
  # Known labels are used as given.
  np.testing.assert_array_equal(out['y'], jax.nn.one_hot(labels, 2))

  # The codebook receives no gradient from the reconstruction ('copy').
  def recon(p):
    o = _apply(model, {'params': p}, x, labels, labels >= 0, train=True,
                    rngs={'sample': jax.random.key(7)})
    return jnp.mean(jnp.square(o['x_hat'] - x))
  grads = jax.jit(jax.grad(recon))(params)
  assert float(jnp.abs(grads['codebook']['embedding']).max()) == 0.0
  assert float(jnp.abs(grads['encoder']['to_latent']['kernel']).max()) > 0.0


def test_gumbel_straight_through_sends_gradient_to_codebook(tiny_model):
  config, _, params, x, labels = tiny_model
  config.model.straight_through = 'gumbel'
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=KINDS)

  def recon(p):
    o = _apply(model, {'params': p}, x, labels, labels >= 0, train=True,
                    rngs={'sample': jax.random.key(7)})
    return jnp.mean(jnp.square(o['x_hat'] - x))
  grads = jax.jit(jax.grad(recon))(params)
  assert float(jnp.abs(grads['codebook']['embedding']).max()) > 0.0


def test_test_time_is_deterministic_and_uses_argmax(tiny_model):
  _, model, params, x, labels = tiny_model
  a = _apply(model, {'params': params}, x, labels, labels >= 0, train=False)
  b = _apply(model, {'params': params}, x, 1 - labels, labels >= 0, train=False)
  np.testing.assert_array_equal(a['x_hat'], b['x_hat'])
  np.testing.assert_array_equal(
      a['y'], jax.nn.one_hot(jnp.argmax(a['logits_y'], -1), 2))
  np.testing.assert_array_equal(a['z_index'],
                                jnp.argmax(a['z_logits'], -1))


def test_distance_scale_multiplies_the_eq4_logits(tiny_model):
  """q(z = k) = softmax_k(-s ||z_e - e_k||): s scales every logit, so the
  most likely code is the same and the entropy falls as s grows."""
  config, model, params, x, labels = tiny_model
  y = jax.nn.one_hot(labels, 2)
  base = _apply(model.clone(distance_scale=1.0), {'params': params}, x,
                labels, labels >= 0, train=True,
                rngs={'sample': jax.random.key(7)})['z_logits']
  entropies = []
  for scale in (1.0, 4.0, 1e4):
    config.model.distance_scale = scale
    scaled = create_model(config.model, image_size=16, channels=3,
                          feature_kinds=KINDS)
    out = _apply(scaled, {'params': params}, x, labels, labels >= 0,
                 train=True, rngs={'sample': jax.random.key(7)})
    codes = _apply(scaled, {'params': params}, x, y,
                   method='posterior_codes', rngs={'sample': jax.random.key(8)})
    np.testing.assert_allclose(out['z_logits'], scale * base, rtol=1e-5)
    entropies.append(float(codes['entropy'].mean()))
    e = params['codebook']['embedding']
    q = jax.nn.softmax(out['z_logits'], -1)
    np.testing.assert_allclose(codes['expected'], q @ e, atol=1e-5)
    if scale == 1e4:  # Practically deterministic: the sample is the mode.
      np.testing.assert_allclose(codes['sample'], codes['most_likely'])
  config.model.distance_scale = model.distance_scale
  assert entropies[0] > entropies[1] > entropies[2] >= 0.0
  assert entropies[2] < 0.02  # nats of 2.77 possible (K = 16)


def test_variants_a_and_b_have_no_features_and_a_constant_kl():
  x = jax.random.uniform(jax.random.key(5), (2, 16, 16, 3), minval=-1)
  labels = jnp.array([[0, 1], [1, 0]])
  for name in ('vq_argmin', 'vq_entropy'):
    config = tiny_config(**{'model.name': name})
    model = create_model(config.model, image_size=16, channels=3,
                         feature_kinds=KINDS)
    params = _init(model, x, labels, labels >= 0, train=True)['params']
    assert params['feature_net']['head']['kernel'].shape[-1] == 4
    out = _apply(model, {'params': params}, x, labels, labels >= 0, train=True,
                      rngs={'sample': jax.random.key(0)})
    batch = {'image': x, 'label': labels, 'labelled': labels >= 0}
    loss_kl = lambda p, o: model.loss_terms(o, batch, tiny_config().objective
                                            )['kl']
    kl = float(loss_kl(params, out))
    q = jax.nn.softmax(out['z_logits'], axis=-1)
    if name == 'vq_argmin':  # nearest code, no sample; KL = N_z^2 log K
      np.testing.assert_array_equal(out['z_index'],
                                    jnp.argmax(out['z_logits'], -1))
      np.testing.assert_allclose(kl, 16 * math.log(16), rtol=1e-6)
      # ... and no gradient: the constant KL does not train anything.
      kl_grad = jax.jit(jax.grad(lambda p: loss_kl(p, model.apply(
          {'params': p}, x, labels, labels >= 0, train=True,
          rngs={'sample': jax.random.key(0)}))))(params)
      assert max(float(jnp.abs(g).max())
                 for g in jax.tree.leaves(kl_grad)) == 0.0
    else:  # Eq. 4: a proper distribution over the K codes
      assert float(q.max()) < 1.0 and float(q.min()) > 0.0
      assert 0.0 < kl < 16 * math.log(16)


def test_paper_size_model_shapes_at_128px():
  config = tiny_config()
  config.model.encoder_widths = (64, 128, 256, 512, 512)
  config.model.feature_widths = (64, 128, 256, 512, 512)
  config.model.decoder_widths = (512, 512, 256, 128, 64)
  config.model.latent_grid, config.model.num_codes = 8, 512
  config.model.code_dim, config.model.num_features = 16, 16
  model = create_model(config.model, image_size=128, channels=3,
                       feature_kinds=('presence',))
  x = jnp.zeros((1, 128, 128, 3))
  labels = jnp.zeros((1, 1), jnp.int32)
  shapes = jax.eval_shape(lambda: _init(model, x, labels, labels > 0,
                                        train=True))['params']
  enc_tokens = [shapes['encoder'][f'tokens_{i}']['table'].shape[-1]
                for i in range(5)]
  assert enc_tokens == [128, 64, 32, 16, 8]  # four downsamplings to N_z = 8
  dec_tokens = [shapes['decoder'][f'tokens_{i}']['table'].shape[-1]
                for i in range(5)]
  assert dec_tokens == [4, 8, 16, 32, 64]  # all five blocks upsample
  assert shapes['decoder']['dense']['kernel'].shape == (8 * 8 * 16 + 1 + 16,
                                                        16 * 512)
  assert shapes['codebook']['embedding'].shape == (512, 16)
  out = jax.eval_shape(lambda p: model.apply(
      {'params': p}, x, labels, labels > 0, train=False), shapes)
  assert out['z_e'].shape == (1, 8, 8, 16)
  assert out['x_hat'].shape == (1, 128, 128, 3)


def test_unreachable_latent_grid_is_a_clear_error():
  config = tiny_config(**{'model.latent_grid': 3})
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=KINDS)
  x, labels = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 2), jnp.int32)
  with pytest.raises(ValueError, match='power-of-two multiple of 3'):
    _init(model, x, labels, labels > 0, train=True)


def test_unknown_model_name_lists_the_known_ones():
  with pytest.raises(ValueError, match='cvqvae'):
    create_model(tiny_config(**{'model.name': 'vqgan'}).model, image_size=16,
                 channels=3, feature_kinds=KINDS)


def test_vq_target_nearest_pulls_towards_the_nearest_code(tiny_model):
  config, _, params, x, labels = tiny_model
  for target in ('nearest', 'sample'):
    config.model.vq_target = target
    model = create_model(config.model, image_size=16, channels=3,
                         feature_kinds=KINDS)
    out = _apply(model, {'params': params}, x, labels, labels >= 0, train=True,
                      rngs={'sample': jax.random.key(9)})
    e = params['codebook']['embedding']
    index = (jnp.argmax(out['z_logits'], -1) if target == 'nearest'
             else out['z_index'])
    np.testing.assert_array_equal(out['z_code'], e[index])
    np.testing.assert_allclose(out['z_q'], e[out['z_index']], atol=1e-6)


def _gaussian(name, **overrides):
  config = tiny_config(**{'model.name': name, **overrides})
  return create_model(config.model, image_size=16, channels=3,
                      feature_kinds=KINDS)


@pytest.mark.parametrize('name,latent_size,adain', [('cgvae', 100, True),
                                                    ('cgvae2', 1024, False)])
def test_gaussian_variants_d_and_f(name, latent_size, adain):
  model = _gaussian(name)
  assert (model.latent_size, model.adain) == (latent_size, adain)
  x = jnp.zeros((2, 16, 16, 3))
  labels = jnp.zeros((2, 2), jnp.int32)
  shapes = jax.eval_shape(lambda: _init(model, x, labels, labels > 0,
                                        train=True))['params']
  assert set(shapes) == {'feature_net', 'encoder', 'to_gaussian', 'decoder'}
  # E_phi's N_z x N_z x D map -> (mu, log sigma^2) of size S_z.
  assert shapes['to_gaussian']['kernel'].shape == (4 * 4 * 4, 2 * latent_size)
  f_size = 3 + 2 * 3
  assert shapes['decoder']['dense']['kernel'].shape == (
      latent_size + 2 + f_size, 16 * 8)
  blocks = [shapes['decoder'][f'block_{i}'] for i in range(5)]
  if adain:  # AdaIN in every decoder block, driven by z (JDVAE, paper 2.4)
    assert all([s[0] for s in _shapes(b['adain_1']) if len(s) == 2]
               == [latent_size] for b in blocks)  # The kernel's input: z.
  else:
    assert not any('adain_1' in b for b in blocks)
  out = jax.eval_shape(lambda p: model.apply(
      {'params': p}, x, labels, labels > 0, train=True,
      rngs={'sample': jax.random.key(0)}), shapes)
  assert out['z_mean'].shape == out['z_log_var'].shape == (2, latent_size)
  assert out['x_hat'].shape == x.shape


def test_c_phi_and_tokens_have_the_same_paths_in_every_model():
  """What the two-step training moves from D to E or F (paper 2.4)."""
  from cvqvae_jax import two_step  # pylint: disable=g-import-not-at-top
  x = jnp.zeros((1, 16, 16, 3))
  labels = jnp.zeros((1, 2), jnp.int32)

  def transferred(name):
    model = _gaussian(name)
    shapes = jax.eval_shape(lambda: _init(model, x, labels, labels > 0,
                                          train=True))['params']
    flat = flax.traverse_util.flatten_dict(shapes, sep='/')
    return {k: v.shape for k, v in flat.items() if two_step.is_transferred(k)}

  d = transferred('cgvae')
  assert d == transferred('cvqvae') == transferred('cgvae2')
  assert 'feature_net/head/kernel' in d
  assert 'decoder/scalar_tokens/table' in d
  assert {f'encoder/tokens_{i}/table' for i in range(5)} <= set(d)
  assert not any('adain' in k or 'codebook' in k for k in d)


def test_gaussian_sampling_and_test_time_mean():
  model = _gaussian('cgvae2')
  x = jax.random.uniform(jax.random.key(5), (3, 16, 16, 3), minval=-1)
  labels = jnp.array([[0, 1], [1, 0], [1, 1]])
  params = _init(model, x, labels, labels >= 0, train=True)['params']
  train_out = _apply(model, {'params': params}, x, labels, labels >= 0,
                     train=True, rngs={'sample': jax.random.key(3)})
  sigma = jnp.exp(0.5 * train_out['z_log_var'])
  eps = (train_out['z_q'] - train_out['z_mean']) / sigma
  assert 0.7 < float(jnp.std(eps)) < 1.3  # z = mu + sigma * N(0, 1)
  test_out = _apply(model, {'params': params}, x, labels, labels >= 0,
                    train=False)
  np.testing.assert_allclose(test_out['z_q'], test_out['z_mean'])
  index, z = _apply(model, {'params': params}, x, test_out['y'],
                    method='encode')
  assert index is None
  np.testing.assert_allclose(z, test_out['z_mean'], atol=1e-5)


def test_data_codebook_init_puts_every_code_on_an_encoder_output(tiny_model):
  """codebook_init='data': e_k are z_e of K distinct latent positions, so
  the nearest codes of a batch are many, not the one N(0, 1) code closest to
  the small initial z_e."""
  _, model, params, x, labels = tiny_model
  assert model.codebook_init == 'data' and model.initialises_from_data
  batch = {'image': x, 'label': labels, 'labelled': labels >= 0}
  new = jax.jit(model.init_from_batch)(params, batch, jax.random.key(3))
  out = _apply(model, {'params': params}, x, labels, labels >= 0, train=True,
               rngs={'sample': jax.random.key(4)})  # y known: no sample
  codes = np.asarray(new['codebook']['embedding'])
  z_e = np.asarray(out['z_e']).reshape(-1, codes.shape[1])
  assert codes.shape == (16, 4)
  # Every code is one of the batch's z_e, and they are 16 different ones.
  dist = np.linalg.norm(codes[:, None] - z_e[None], axis=-1)
  np.testing.assert_allclose(dist.min(axis=1), 0.0, atol=1e-5)
  assert len({int(i) for i in dist.argmin(axis=1)}) == 16
  # Only the codebook changed.
  for name in ('encoder', 'decoder', 'feature_net'):
    jax.tree.map(np.testing.assert_array_equal, new[name], params[name])
  nearest = np.linalg.norm(z_e[:, None] - codes[None], axis=-1).argmin(1)
  old_nearest = np.linalg.norm(
      z_e[:, None] - np.asarray(params['codebook']['embedding'])[None],
      axis=-1).argmin(1)
  assert len(set(nearest)) > len(set(old_nearest))
  small = {k: v[:1] for k, v in batch.items()}  # 16 positions = K: enough
  model.init_from_batch(params, small, jax.random.key(3))
  k17 = {**params, 'codebook': {'embedding': jnp.zeros((17, 4))}}
  with pytest.raises(ValueError, match='needs batch_size'):
    model.clone(num_codes=17).init_from_batch(k17, small, jax.random.key(3))
  # Any other init: the hook leaves every parameter as it is.
  other = model.clone(codebook_init='normal')
  assert not other.initialises_from_data
  assert other.init_from_batch(params, batch, jax.random.key(3)) is params


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_every_registered_model_meets_the_contract(name):
  """models/contract.py: the methods, the outputs of one pass and their
  shapes, for every name of the registry (shapes only: nothing compiles)."""
  config = tiny_config(**{'model.name': name})
  config.model.latent_size = {k: 6 for k in config.model.latent_size}
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=KINDS)
  assert isinstance(model, contract.Model)
  assert model.latent in contract.LATENTS
  b = 3
  x = jnp.zeros((b, 16, 16, 3))
  labels = jnp.zeros((b, 2), jnp.int32)
  rngs = {'params': jax.random.key(0), 'sample': jax.random.key(1)}
  params = jax.eval_shape(lambda: model.init(rngs, x, labels, labels > 0,
                                             train=True))['params']
  expected = contract.output_shapes(model, b)
  if model.latent == 'categorical':
    assert expected['z_q'] == (b, 4, 4, 4)
  else:
    assert expected['z_q'] == (b, 6)
  sizes = {'presence': 3, 'both': 6} if model.use_features else {
      'presence': 0, 'both': 0}
  assert expected['c'] == tuple((b, sizes[k]) for k in KINDS)

  def shapes(tree):
    return jax.tree.map(lambda a: a.shape, tree)

  def apply(*args, **kwargs):
    return jax.eval_shape(lambda p, *a: model.apply(
        {'params': p}, *a, rngs={'sample': jax.random.key(2)}, **kwargs),
                          params, *args)

  for train in (True, False):
    out = apply(x, labels, labels > 0, train=train)
    assert {k: shapes(out[k]) for k in expected} == expected, train
  logits, c = apply(x, method='classify')
  assert (logits.shape, shapes(tuple(c))) == (expected['logits_y'],
                                             expected['c'])
  y = jnp.zeros((b, 2, 2))
  index, z = apply(x, y, method='encode')
  assert z.shape == expected['z_q']
  assert (index is None) == (model.latent == 'gaussian')
  if index is not None:
    assert index.shape == (b, 4, 4)
  assert apply(z, y, c, method='decode').shape == expected['x_hat']
  codes = apply(x, y, method='posterior_codes')
  for key in ('most_likely', 'sample', 'expected'):
    assert codes[key].shape == expected['z_q'], key
  if model.latent == 'categorical':
    assert codes['entropy'].shape == (b, 4, 4)
  out = apply(x, labels, labels > 0, train=True)
  batch = {'image': x, 'label': labels, 'labelled': labels > 0}
  terms = jax.eval_shape(lambda o: model.loss_terms(o, batch,
                                                    config.objective), out)
  assert {'reconstruction', 'classification'} <= set(terms)
  assert ('loss' in terms) == model.own_bound
  assert set(terms) & {'kl', 'kl_z'}  # every model has a KL of z
  assert all(t.shape == () and t.dtype == jnp.float32
             for t in terms.values())
  initialised = jax.eval_shape(lambda p: model.init_from_batch(
      p, batch, jax.random.key(3)), params)
  assert shapes(initialised) == shapes(params)
  logged = jax.eval_shape(lambda o: objectives.model_terms(
      model, o, batch, config.objective), out)
  assert set(objectives.logged_terms()) <= set(logged)
