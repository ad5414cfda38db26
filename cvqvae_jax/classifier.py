"""The independent classifier of paper section 3: one ResNet per label,
trained fully supervised on the training split (every label known: the
source's 'label', not the supervision mask), and cached in the workdir.

It judges the swaps (SR(+), SR(-)), gives the outputs compared by the CFD,
and, when no FID Inception weights are given, the features of the
classifier Frechet distance. Cache layout, one orbax checkpoint per label:

  WORKDIR/classifier/LABEL-ARCH-HASH/   HASH of describe(config, label)

The stored description is compared again on restore, so a classifier is
never reused for another label, architecture, training setup or dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from cvqvae_jax import metrics
from cvqvae_jax import paths
from cvqvae_jax import resnet
from cvqvae_jax import xla_options
from cvqvae_jax.data import pipeline

# Data fields that do not change which images and labels a split holds.
_RUNTIME_DATA_FIELDS = ('read_threads', 'prefetch_buffer', 'worker_count',
                        'supervision_rate', 'labels')


def eval_seed(config: ml_collections.ConfigDict) -> int:
  """eval.seed: the evaluation's own randomness (the classifiers'
  initialisation and data order, the swap pairs, the probes' halves), the
  same for every config.seed. A config without the field (a workdir written
  before it existed) used config.seed."""
  return int(config.eval.get('seed', config.seed))


def describe(config: ml_collections.ConfigDict, label: str) -> dict[str, Any]:
  """What must match for a cached classifier to be reused."""
  e = config.eval
  data = {k: v for k, v in config.data.to_dict().items()
          if k not in _RUNTIME_DATA_FIELDS}
  data = json.loads(json.dumps(data, default=list))  # tuples -> lists
  return {'label': label, 'architecture': e.classifier,
          'steps': e.classifier_steps, 'batch_size': e.classifier_batch_size,
          'learning_rate': e.classifier_learning_rate,
          'seed': eval_seed(config),
          'data': data}


def cache_dir(workdir: str, description: dict[str, Any]) -> str:
  digest = hashlib.sha256(json.dumps(description, sort_keys=True)
                          .encode()).hexdigest()[:10]
  name = f"{description['label']}-{description['architecture']}-{digest}"
  return paths.join(workdir, 'classifier', name)


@dataclasses.dataclass
class Classifier:
  """A trained classifier of one label.

  predict: jitted (variables, x) -> (probabilities, features), shared by the
  classifiers of one architecture so that it compiles once.
  """
  label: str
  variables: Any
  test_accuracy: float
  test_bca: float
  predict: Any

  def outputs(self, x) -> tuple[jax.Array, jax.Array]:
    """x (B, S, S, C) in [-1, 1] -> (probabilities (B, 2), features (B, F))."""
    return self.predict(self.variables, x)


def _predict(model, variables, x):
  logits, features = model.apply(variables, x, train=False)
  return jax.nn.softmax(logits), features


def _train_step(state, x, y, *, model, tx):
  params, batch_stats, opt_state = state

  def loss_fn(p):
    (logits, _), updates = model.apply(
        {'params': p, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (updates['batch_stats'], jnp.mean(
        jnp.argmax(logits, -1) == y))

  (loss, (batch_stats, acc)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return (params, batch_stats, opt_state), {'loss': loss, 'accuracy': acc}


def _optimizer(config) -> optax.GradientTransformation:
  e = config.eval
  return _adam(e.classifier_learning_rate, e.classifier_steps)


def _adam(learning_rate: float, steps: int) -> optax.GradientTransformation:
  return optax.adam(optax.cosine_decay_schedule(learning_rate,
                                                max(steps, 1)))


@functools.lru_cache(maxsize=8)
def _jitted(model, learning_rate: float, steps: int):
  """(train step, predict) of one architecture and schedule, jitted once
  per process: every label's classifier, and every evaluation of the
  process, share them."""
  step_fn = xla_options.jit(functools.partial(
      _train_step, model=model, tx=_adam(learning_rate, steps)))
  return step_fn, xla_options.jit(functools.partial(_predict, model))


def _init_fn(model, image_shape):
  """key -> the variables of a fresh classifier."""
  return lambda key: model.init(
      key, jnp.zeros((1, *image_shape), jnp.float32), train=False)


@functools.lru_cache(maxsize=8)
def _jitted_init(model, image_shape: tuple[int, ...]):
  """_init_fn compiled once per architecture and image shape
  (xla_options.jit_init: the same bits as Flax's init run op by op, which
  compiled each of its ~100 ops on first use)."""
  return xla_options.jit_init(_init_fn(model, image_shape))


def _init_variables(model, image_shape, seed: int):
  return _jitted_init(model, tuple(image_shape))(jax.random.key(seed))


def _test_scores(clf_apply, variables, config, label_index: int):
  """Accuracy and BCA on the whole test split."""
  preds, trues = [], []
  for batch in pipeline.create_eval_dataset(config, 'test',
                                            keep_factors=False):
    probs, _ = clf_apply(variables, batch['image'])
    preds.append(np.argmax(np.asarray(probs), -1))
    trues.append(batch['label'][:, label_index])
  preds, trues = np.concatenate(preds), np.concatenate(trues)
  return (float(np.mean(preds == trues)),
          float(metrics.balanced_accuracy(trues, preds)))


def train(config, label_index: int, step_fn, model, image_shape):
  """Trains one label's classifier; returns its variables."""
  e = config.eval
  name = config.data.labels[label_index]
  seed = eval_seed(config)
  data_config = ml_collections.ConfigDict(config.to_dict())
  data_config.batch_size = e.classifier_batch_size
  data_config.seed = seed  # the data order (the split is data.seed's)
  stream = iter(pipeline.create_train_dataset(data_config))
  variables = _init_variables(model, image_shape, seed + label_index)
  state = (variables['params'], variables['batch_stats'],
           _optimizer(config).init(variables['params']))
  log_every = max(1, e.classifier_steps // 10)
  start, window = time.time(), []
  for step in range(1, e.classifier_steps + 1):
    batch = next(stream)
    state, m = step_fn(state, batch['image'], batch['label'][:, label_index])
    window.append(m)
    if step % log_every == 0 or step == e.classifier_steps:
      m = jax.device_get(window)
      line = (f'Classifier {name} ({e.classifier}): step {step}/'
              f'{e.classifier_steps} loss {np.mean([w["loss"] for w in m]):.4f}'
              f' acc {np.mean([w["accuracy"] for w in m]):.3f} '
              f'({time.time() - start:.0f} s)')
      logging.info(line)
      window = []
  return {'params': state[0], 'batch_stats': state[1]}


def share_cache(root: str, workdir: str) -> None:
  """Makes WORKDIR/classifier a link to ROOT/classifier, so that several runs
  (experiments/table1.py, table2.py) are judged by the same independent
  classifiers, trained once (the cache is keyed by data, label and network).
  Local folders only."""
  shared = os.path.join(root, 'classifier')
  os.makedirs(shared, exist_ok=True)
  link = os.path.join(workdir, 'classifier')
  if not os.path.lexists(link):
    os.symlink(shared, link)


def load_or_train(config, workdir: str) -> dict[str, Classifier]:
  """One Classifier per label of config.data.labels, restored from the
  workdir cache when a matching one exists, else trained and cached.

  One process only: several would each train on their own shard of the
  training split and overwrite one cache folder.
  """
  if jax.process_count() > 1:
    raise ValueError(
        'The independent classifiers are trained and cached by one process; '
        f'{jax.process_count()} processes were started (run --mode=evaluate '
        'without --distributed).')
  image_shape = pipeline.image_shape(config.data)
  model = resnet.create_resnet(config.eval.classifier)
  step_fn, predict = _jitted(model, config.eval.classifier_learning_rate,
                             config.eval.classifier_steps)
  abstract = jax.eval_shape(_init_fn(model, image_shape), jax.random.key(0))
  out = {}
  for index, label in enumerate(config.data.labels):
    description = describe(config, label)
    directory = cache_dir(workdir, description)
    cached = _restore(directory, description, abstract)
    if cached is None:
      variables = train(config, index, step_fn, model, image_shape)
      accuracy, bca = _test_scores(predict, variables, config, index)
      _save(directory, variables, {'description': description,
                                   'test_accuracy': accuracy,
                                   'test_bca': bca})
      logging.info('Classifier %s: test accuracy %.4f, BCA %.4f; cached in '
                   '%s', label, accuracy, bca, directory)
    else:
      variables, meta = cached
      accuracy, bca = meta['test_accuracy'], meta['test_bca']
      logging.info('Classifier %s restored from %s (test accuracy %.4f).',
                   label, directory, accuracy)
    out[label] = Classifier(label, variables, accuracy, bca, predict)
  return out


def _manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(max_to_keep=1,
                                                      create=True),
      item_handlers={'variables': ocp.StandardCheckpointHandler(),
                     'meta': ocp.JsonCheckpointHandler()})


def _save(directory, variables, meta) -> None:
  if epath.Path(directory).is_dir():  # A stale or foreign cache: replace it.
    epath.Path(directory).rmtree()
  manager = _manager(directory)
  manager.save(0, args=ocp.args.Composite(
      variables=ocp.args.StandardSave(variables),
      meta=ocp.args.JsonSave(meta)))
  manager.wait_until_finished()
  manager.close()


def _restore(directory, description, abstract):
  """(variables, meta) of a matching cached classifier, else None."""
  if not epath.Path(directory).is_dir():
    return None
  manager = _manager(directory)
  try:
    if manager.latest_step() is None:
      return None
    meta = manager.restore(0, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
    if meta.get('description') != description:
      logging.warning('Classifier cache %s holds another classifier; '
                      'training a new one.', directory)
      return None
    variables = manager.restore(0, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract)))['variables']
    return variables, meta
  finally:
    manager.close()
