"""The independent classifier's networks and its cache key."""

import jax
import jax.numpy as jnp
import pytest

from cvqvae_jax import classifier
from cvqvae_jax import resnet

from conftest import tiny_config


@pytest.mark.parametrize('name,size,width', [
    ('resnet18', 64, 512), ('resnet34', 64, 512), ('resnet50', 128, 2048),
    ('cifar_resnet8', 32, 64), ('cifar_resnet20', 32, 64)])
def test_resnets_give_two_logits_and_pooled_features(name, size, width):
  model = resnet.create_resnet(name)
  x = jnp.zeros((3, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  logits, features = jax.eval_shape(
      lambda v: model.apply(v, x, train=False), variables)
  assert logits.shape == (3, 2) and features.shape == (3, width)
  assert set(variables) == {'params', 'batch_stats'}


def test_unknown_architecture_names_the_choices():
  with pytest.raises(ValueError, match='cifar_resnet8'):
    resnet.create_resnet('resnet7')


def test_cache_is_keyed_by_label_architecture_training_and_data():
  config = tiny_config()
  base = classifier.cache_dir('/w', classifier.describe(config, 'glasses'))
  assert base.startswith('/w/classifier/glasses-cifar_resnet8-')
  assert base == classifier.cache_dir(
      '/w', classifier.describe(tiny_config(), 'glasses'))
  # Fields that do not change the data or the classifier share the cache.
  # The model's seed is not the classifier's: runs of several seeds are
  # judged by one classifier.
  same = tiny_config(**{'data.read_threads': 3, 'num_train_steps': 99,
                        'data.supervision_rate': 0.5, 'seed': 2})
  assert classifier.cache_dir('/w', classifier.describe(same, 'glasses')) == (
      base)
  for overrides, label in [({}, 'smile'),
                           ({'eval.classifier': 'resnet18'}, 'glasses'),
                           ({'eval.classifier_steps': 5}, 'glasses'),
                           ({'data.image_size': 32}, 'glasses'),
                           ({'data.seed': 1}, 'glasses'),
                           ({'eval.seed': 1}, 'glasses')]:
    other = classifier.describe(tiny_config(**overrides), label)
    assert classifier.cache_dir('/w', other) != base, overrides


def test_eval_seed_is_the_evaluations_own():
  config = tiny_config(seed=3)
  assert classifier.eval_seed(config) == 0  # eval.seed, not seed
  config = tiny_config(**{'eval.seed': 5})
  assert classifier.eval_seed(config) == 5
  old = tiny_config(seed=3)  # a workdir's config.json from before the field
  with old.unlocked():
    del old.eval['seed']
  assert classifier.eval_seed(old) == 3
