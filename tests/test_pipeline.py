"""The grain pipeline: supervision mask, batches, sharding and resumable
iterator state."""

import numpy as np
import pytest

from cvqvae_jax.data import pipeline

from conftest import tiny_config


def test_supervision_mask_is_exact_seeded_and_fixed():
  a = pipeline.supervision_mask(1000, 0.2, seed=3)
  assert a.dtype == bool and a.sum() == 200
  np.testing.assert_array_equal(a, pipeline.supervision_mask(1000, 0.2, 3))
  assert (a != pipeline.supervision_mask(1000, 0.2, 4)).any()
  assert pipeline.supervision_mask(10, 0.0, 0).sum() == 0
  assert pipeline.supervision_mask(10, 1.0, 0).all()
  with pytest.raises(ValueError, match='supervision_rate'):
    pipeline.supervision_mask(10, 1.5, 0)


def test_train_batches_carry_only_what_the_step_needs():
  config = tiny_config()
  batch = next(iter(pipeline.create_train_dataset(config)))
  assert set(batch) == {'image', 'label', 'labelled', 'index'}
  assert batch['image'].shape == (8, 16, 16, 3)
  assert batch['image'].dtype == np.float32
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1
  assert batch['label'].shape == batch['labelled'].shape == (8, 2)
  mask = pipeline.supervision_mask(64, 0.2, config.data.seed)
  np.testing.assert_array_equal(batch['labelled'][:, 0],
                                mask[batch['index']])


def test_an_epoch_visits_every_example_once_and_epochs_reshuffle():
  config = tiny_config(batch_size=16)
  it = iter(pipeline.create_train_dataset(config))
  epochs = [np.concatenate([next(it)['index'] for _ in range(4)])
            for _ in range(2)]
  for e in epochs:
    np.testing.assert_array_equal(np.sort(e), np.arange(64))
  assert (epochs[0] != epochs[1]).any()


def test_labelled_fraction_over_an_epoch_is_the_supervision_rate():
  config = tiny_config(batch_size=16)
  it = iter(pipeline.create_train_dataset(config))
  labelled = np.concatenate([next(it)['labelled'][:, 0] for _ in range(4)])
  assert labelled.sum() == round(0.2 * 64)


def test_iterator_state_restores_the_exact_stream():
  config = tiny_config()
  it = iter(pipeline.create_train_dataset(config))
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it)['index'] for _ in range(3)]
  fresh = iter(pipeline.create_train_dataset(config))
  fresh.set_state(state)
  got = [next(fresh)['index'] for _ in range(3)]
  np.testing.assert_array_equal(np.stack(got), np.stack(expected))


def test_eval_dataset_is_ordered_complete_and_keeps_factors():
  config = tiny_config()
  batches = list(pipeline.create_eval_dataset(config, 'test', batch_size=5))
  assert [len(b['index']) for b in batches] == [5, 5, 5, 1]
  np.testing.assert_array_equal(
      np.concatenate([b['index'] for b in batches]), np.arange(16))
  assert batches[0]['labelled'].all()
  assert batches[0]['factors']['glasses'].shape == (5,)
  np.testing.assert_array_equal(batches[0]['factors']['glasses'],
                                batches[0]['label'][:, 0])


def test_unknown_source_is_a_clear_error():
  config = tiny_config(**{'data.source': 'imagenet'})
  with pytest.raises(ValueError, match="Unknown data.source 'imagenet'"):
    pipeline.create_source(config.data, 'train')
