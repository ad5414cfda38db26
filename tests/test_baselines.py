"""The baselines M2, CCVAE and JDVAE (models/baselines.py): their losses on
hand-checkable cases, training on the procedural benchmark, swaps, and the
evaluation and figures modes."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import tiny_config
from cvqvae_jax import cli
from cvqvae_jax import manipulate
from cvqvae_jax import objectives
from cvqvae_jax import models
from cvqvae_jax import train
from cvqvae_jax.data import pipeline
from cvqvae_jax.models import baselines

BASELINES = ('m2', 'ccvae', 'jdvae')
OBJECTIVE = ml_collections.ConfigDict(
    {'beta': 0.5, 'alpha': 2.0, 'commitment': 0.25, 'beta_features': 0.1})


def _model(name, **overrides):
  config = tiny_config(**{'model.name': name, 'stage_one.model': '',
                          **overrides})
  return config, models.for_config(config, pipeline.image_shape(config.data))


def _batch(labels, labelled, image_value=0.0, size=2):
  labels = jnp.asarray(labels, jnp.int32)
  return {'image': jnp.full((labels.shape[0], size, size, 1), image_value),
          'label': labels, 'labelled': jnp.asarray(labelled, bool)}


def test_gaussian_kl_against_the_closed_form():
  # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, 1) || N(0, 0.1^2)) per dimension
  # = 1/2 (log 0.01 - 0 + 1 / 0.01 - 1).
  one = jnp.ones((1, 1))
  np.testing.assert_allclose(
      objectives.gaussian_kl(one, 0 * one, 0 * one, 0 * one), [0.5],
      rtol=1e-6)
  expected = 0.5 * (math.log(0.01) + 100.0 - 1.0)
  np.testing.assert_allclose(
      objectives.gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)),
                             jnp.zeros((1, 3)),
                             jnp.full((1, 3), math.log(0.01))),
      [3 * expected], rtol=1e-5)
  # Against the standard-normal special case.
  mean, log_var = jnp.array([[0.3, -1.2]]), jnp.array([[0.5, -0.7]])
  np.testing.assert_allclose(
      objectives.gaussian_kl(mean, log_var, 0 * mean, 0 * mean),
      objectives.gaussian_kl_to_standard(mean, log_var), rtol=1e-6)


def test_m2_adds_the_label_kl_of_unlabelled_examples_only():
  _, model = _model('m2')
  # Example 0: q(y|x) certain, unlabelled -> KL = log 2; example 1: the same
  # but labelled -> no KL; example 2: q(y|x) = (1/2, 1/2) -> 0.
  logits = jnp.array([[[0.0, -1e4]], [[0.0, -1e4]], [[0.0, 0.0]]])
  out = {'logits_y': logits, 'x_hat': jnp.zeros((3, 2, 2, 1)),
         'z_mean': jnp.ones((3, 2)), 'z_log_var': jnp.zeros((3, 2))}
  batch = _batch([[0], [0], [1]], [[False], [True], [False]])
  terms = objectives.model_terms(model, out, batch, OBJECTIVE)
  np.testing.assert_allclose(terms['kl_y'], math.log(2) / 3, rtol=1e-5)
  np.testing.assert_allclose(terms['kl_z'], 1.0, rtol=1e-6)  # 2 x 1/2
  np.testing.assert_allclose(terms['kl'], 1.0 + math.log(2) / 3, rtol=1e-5)
  np.testing.assert_allclose(terms['classification'], 0.0, atol=1e-4)
  np.testing.assert_allclose(
      terms['loss'], 0.5 * (1.0 + math.log(2) / 3) + 2.0 * 0.0, atol=1e-4)


def test_jdvae_feature_kl_uses_the_prior_of_the_label():
  # Label 0 'presence' (c of size 3): y = 1 -> N(0, I); label 1 'both'
  # (c0, c1 of size 3 each): y = 1 -> c0 ~ N(0, 0.1^2), c1 ~ N(0, I).
  _, model = _model('jdvae', **{'model.num_features': 3})
  y = jax.nn.one_hot(jnp.array([[1, 1]]), 2)
  prior = model.feature_prior_log_var(y)
  null = 2 * math.log(model.feature_null_std)
  np.testing.assert_allclose(prior[0], [[0.0] * 3])
  np.testing.assert_allclose(prior[1], [[null] * 3 + [0.0] * 3], rtol=1e-6)
  out = {'logits_y': jnp.zeros((1, 2, 2)), 'x_hat': jnp.zeros((1, 2, 2, 1)),
         'z_mean': jnp.zeros((1, 4)), 'z_log_var': jnp.zeros((1, 4)),
         'y': y, 'c_mean': (jnp.ones((1, 3)), jnp.zeros((1, 6))),
         'c_log_var': (jnp.zeros((1, 3)), jnp.zeros((1, 6)))}
  terms = objectives.model_terms(
      model, out, _batch([[1, 1]], [[False, False]]), OBJECTIVE)
  # Label 0: 3 x KL(N(1, 1) || N(0, 1)) = 1.5; label 1: 3 x KL(N(0, 1) ||
  # N(0, 0.01)) + 0.
  expected = 1.5 + 3 * 0.5 * (null + 1 / 0.01 - 1)
  np.testing.assert_allclose(terms['kl_c'], expected, rtol=1e-5)
  np.testing.assert_allclose(terms['kl_z'], 0.0, atol=1e-6)
  np.testing.assert_allclose(terms['loss'], 0.1 * expected, rtol=1e-5)


def test_ccvae_weight_and_bound_on_a_hand_checkable_case():
  np.testing.assert_allclose(
      baselines.ccvae_weight(jnp.log(0.9), jnp.log(0.6)), 1.5, rtol=1e-6)
  # log q(y|x) as the mean of k per-sample q(y|z_c).
  np.testing.assert_allclose(
      baselines.monte_carlo_log_likelihood(jnp.log(jnp.array([0.2, 0.6]))),
      math.log(0.4), rtol=1e-6)

  _, model = _model('ccvae', **{'data.labels': ('glasses',)})
  # One labelled example, y = 1: q(y=1|z_c) = 0.9 (the weight's, and the
  # bound's), q(y=1|x) = 0.6; z_c and z_s on their priors (KL 0).
  logit = lambda p: jnp.log(jnp.array([[[1 - p, p]]]))
  zeros = jnp.zeros((1, 3))
  out = {'logits_y': logit(0.6), 'logits_zc': logit(0.9),
         'logits_zc_fixed': logit(0.9), 'y': jnp.array([[[0.0, 1.0]]]),
         'x_hat': jnp.full((1, 2, 2, 1), 0.5),
         'c_mean': (zeros,), 'c_log_var': (zeros,), 'prior_mean': (zeros,),
         'prior_log_var': (zeros,), 'z_mean': zeros, 'z_log_var': zeros}
  terms = objectives.model_terms(model, out, _batch([[1]], [[True]]),
                                 OBJECTIVE)
  np.testing.assert_allclose(terms['ccvae_weight'], 1.5, rtol=1e-5)
  # w (mse + beta (0 - log q(y|z_c))) + alpha (-log q(y|x)).
  expected = 1.5 * (0.25 - 0.5 * math.log(0.9)) - 2.0 * math.log(0.6)
  np.testing.assert_allclose(terms['loss'], expected, rtol=1e-5)
  np.testing.assert_allclose(terms['classification'], -math.log(0.6),
                             rtol=1e-5)
  # Unlabelled: weight 1, and KL(q(y|z_c) || U) instead of log q(y|z_c).
  terms = objectives.model_terms(model, out, _batch([[1]], [[False]]),
                                 OBJECTIVE)
  kl_y = math.log(2) + 0.9 * math.log(0.9) + 0.1 * math.log(0.1)
  np.testing.assert_allclose(terms['kl_y'], kl_y, rtol=1e-5)
  np.testing.assert_allclose(terms['loss'], 0.25 + 0.5 * kl_y, rtol=1e-5)


def _train(name, steps, **overrides):
  """(model, params, per-step loss, last batch) of `steps` tiny steps."""
  config, model = _model(name, **overrides)
  state = train.create_train_state(
      jax.random.key(0), model=model,
      tx=optax.adam(config.learning_rate),  # One stage: no freeze.
      image_shape=pipeline.image_shape(config.data),
      num_labels=len(config.data.labels))
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   objective=config.objective))
  data = iter(pipeline.create_train_dataset(config))
  losses = []
  for _ in range(steps):
    batch = {k: jnp.asarray(v) for k, v in next(data).items()
             if k in ('image', 'label', 'labelled')}
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(metrics)
  return config, model, state.params, losses


class _Trained(dict):
  """Each baseline, trained on first use: 150 steps of a tiny model with
  every label known."""

  def __missing__(self, name):
    self[name] = _train(name, 150, **{'data.supervision_rate': 1.0,
                                      'data.num_train': 512,
                                      'learning_rate': 3e-3,
                                      'data.labels': ('glasses',)})
    return self[name]


@pytest.fixture(scope='module')
def trained_baselines():
  return _Trained()


@pytest.mark.parametrize('name', BASELINES)
def test_training_steps_are_finite_and_lower_the_loss(trained_baselines,
                                                      name):
  _, _, _, history = trained_baselines[name]
  for metrics in history:
    for key in objectives.logged_terms():  # The schema of metrics.jsonl.
      assert np.isfinite(float(metrics[key])), (name, key)
  first = np.mean([float(m['reconstruction']) for m in history[:10]])
  last = np.mean([float(m['reconstruction']) for m in history[-10:]])
  assert last < 0.7 * first, (name, first, last)


@pytest.mark.parametrize('name', BASELINES)
def test_swap_changes_the_label_the_classifier_sees(trained_baselines, name):
  config, model, params, _ = trained_baselines[name]
  data = next(iter(pipeline.create_eval_dataset(
      tiny_config(**{'data.labels': ('glasses',), 'data.num_test': 64,
                     'eval.batch_size': 64}), 'test')))
  x, labels = jnp.asarray(data['image']), jnp.asarray(data['label'])
  i0 = np.flatnonzero(np.asarray(labels[:, 0]) == 0)[:8]
  i1 = np.flatnonzero(np.asarray(labels[:, 0]) == 1)[:8]
  n = min(len(i0), len(i1))
  assert n >= 4
  i0, i1 = i0[:n], i1[:n]
  p1 = lambda images: jax.nn.softmax(model.apply(
      {'params': params}, images, method='classify')[0], -1)[:, 0, 1]
  # The model's own classifier tells the two groups apart ...
  assert float(p1(x[i1]).mean()) > float(p1(x[i0]).mean()) + 0.3
  # ... and sees the label move with the swap: fake+ = (z_0, c_1, y = 1),
  # fake- = (z_1, c_0, y = 0). (A swap that changed nothing moves nothing.)
  plus = manipulate.swap(model, params, x[i0], x[i1], 0, labels[i0],
                         labels[i1])
  minus = manipulate.swap(model, params, x[i1], x[i0], 0, labels[i1],
                          labels[i0])
  assert float(p1(plus).mean()) > float(p1(x[i0]).mean()) + 0.1, name
  assert float(p1(minus).mean()) < float(p1(x[i1]).mean()) - 0.1, name


@pytest.mark.usefixtures('stub_classifiers')
def test_ccvae_evaluate_mode(tmp_path):
  """The CLI's train and evaluate paths for a baseline: every results.json
  key of CVQVAE, c leakage included. (The independent classifier is a stub
  here: tests/test_classifier.py and tests/test_train.py train real ones.)"""
  config = tiny_config(**{'model.name': 'ccvae', 'num_train_steps': 2})
  workdir = str(tmp_path / 'ccvae')
  assert train.train_and_evaluate(config, workdir)
  results = cli.run_offline('evaluate', config, workdir)
  assert results['model'] == 'ccvae' and results['step'] == 2
  for row in results['labels'].values():
    for key in ('bca', 'sr_plus', 'sr_minus', 'cfd', 'oracle_swap_mse_plus',
                'oracle_reconstruction_mse_minus', 'z_leakage'):
      assert row[key] is not None and np.isfinite(row[key]), key
    assert 'c_leakage' in row
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    assert json.load(f)['model'] == 'ccvae'


def test_unknown_baseline_size_is_a_clear_error():
  config = tiny_config(**{'model.name': 'jdvae'})
  with config.unlocked():
    del config.model.latent_size['jdvae']
  with pytest.raises(ValueError, match="latent_size has no S_z for 'jdvae'"):
    models.for_config(config, pipeline.image_shape(config.data))
