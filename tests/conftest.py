"""Shared fixtures: a tiny version of the default config, so that every test
compiles small models once per shape."""

import os
import sys
import tempfile

# The tests compile many tiny programs and run each a few times: LLVM's
# optimisations cost more than they save there (cold compiles ~3x faster).
# Set before JAX creates its CPU client; children inherit it.
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
if FAST_COMPILE_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = ' '.join(
      f for f in (os.environ.get('XLA_FLAGS', ''), FAST_COMPILE_FLAG) if f)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Tests build the same tiny model many times: XLA's persistent cache turns
# every compilation after the first into a lookup.
CACHE_ENV = {
    'JAX_COMPILATION_CACHE_DIR': os.path.join(tempfile.gettempdir(),
                                              'cvqvae_jax_xla_cache'),
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
    'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
}
jax.config.update('jax_compilation_cache_dir',
                  CACHE_ENV['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def subprocess_env(**extra) -> dict:
  """The environment for a child python: same XLA cache, plus `extra`."""
  return {**os.environ, **CACHE_ENV, **extra}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's cvqvae_jax, whatever else is installed.
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from cvqvae_jax import config_files  # pylint: disable=g-import-not-at-top,wrong-import-position

default = config_files.load(os.path.join(ROOT, 'configs', 'default.py'))


def tiny_config(**overrides):
  """configs/default.py shrunk to 16 px, widths 8, a handful of steps."""
  config = default.get_config()
  config.batch_size = 8
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.data.image_size = 16
  config.data.num_train = 64
  config.data.num_test = 16
  config.data.read_threads = 1
  config.data.prefetch_buffer = 2
  config.model.encoder_widths = (8, 8, 8, 8, 8)
  config.model.feature_widths = (8, 8, 8, 8, 8)
  config.model.decoder_widths = (8, 8, 8, 8, 8)
  config.model.latent_grid = 4
  config.model.num_codes = 16
  config.model.code_dim = 4
  config.model.num_features = 3
  config.eval.batch_size = 8
  config.eval.num_examples = 16
  config.eval.num_pairs = 8
  config.eval.classifier = 'cifar_resnet8'
  config.eval.classifier_steps = 4
  config.eval.classifier_batch_size = 8
  config.eval.figure_examples = 2
  with config.unlocked():
    for key, value in overrides.items():
      node = config
      *parents, leaf = key.split('.')
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config


def init_tiny_model(config):
  """The model of a tiny_config (16 px colour, the two procedural labels),
  freshly initialised with fixed keys: (model, params)."""
  import functools  # pylint: disable=g-import-not-at-top
  from cvqvae_jax.models import create_model  # pylint: disable=g-import-not-at-top
  model = create_model(config.model, image_size=16, channels=3,
                       feature_kinds=('presence', 'both'))
  x = np.zeros((2, 16, 16, 3), np.float32)
  labels = np.ones((2, 2), np.int32)
  rngs = {'params': jax.random.key(1), 'sample': jax.random.key(2)}
  params = jax.jit(functools.partial(model.init, train=True))(
      rngs, x, labels, labels > 0)['params']
  return model, params


# A tiny model and data, as --config.FIELD=VALUE flags of configs/default.py
# (the tests of the command line).
TINY_FLAGS = ('--config.batch_size=8', '--config.data.image_size=16',
              '--config.data.num_train=64', '--config.data.num_test=16',
              '--config.model.encoder_widths=(8,8,8,8,8)',
              '--config.model.feature_widths=(8,8,8,8,8)',
              '--config.model.decoder_widths=(8,8,8,8,8)',
              '--config.model.latent_grid=4', '--config.model.num_codes=16',
              '--config.model.code_dim=4', '--config.model.num_features=3',
              '--config.eval.batch_size=8', '--config.eval.num_examples=16',
              '--config.log_every_steps=1', '--config.data.read_threads=1',
              # --mode=evaluate/figures: a tiny independent classifier.
              '--config.eval.num_pairs=8', '--config.eval.classifier_steps=2',
              '--config.eval.classifier_batch_size=8',
              '--config.eval.figure_examples=2')


@pytest.fixture
def make_tiny_config():
  return tiny_config


class StubClassifier:
  """Stands in for the independent classifier of one label
  (tests/test_classifier.py tests the real one)."""
  test_accuracy, test_bca = 0.5, 0.5

  def outputs(self, x):
    x = np.asarray(x)
    feats = x[:, ::4, ::4, 0].reshape(len(x), -1)
    p = 1 / (1 + np.exp(-feats.mean(1)))
    return np.stack([1 - p, p], 1), feats


@pytest.fixture
def stub_classifiers(monkeypatch):
  """classifier.load_or_train gives a StubClassifier per label: evaluation
  without training the independent classifiers."""
  from cvqvae_jax import classifier  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(
      classifier, 'load_or_train',
      lambda config, workdir: {l: StubClassifier()
                               for l in config.data.labels})
