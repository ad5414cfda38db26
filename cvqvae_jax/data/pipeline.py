"""grain input pipelines: sources by `data.source`, the seeded supervision
mask, per-process sharding and the train/eval iterators."""

from __future__ import annotations

from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from cvqvae_jax.data import errors
from cvqvae_jax.data import procedural
from cvqvae_jax.data import sources

SOURCES = ('procedural', *sources.SOURCES)


def supervision_mask(num_examples: int, rate: float, seed: int) -> np.ndarray:
  """A fixed, seeded subset of round(rate * n) examples keeps its labels.

  Returns a bool array (num_examples,). Depends only on (n, rate, seed), so a
  resumed or re-run job labels exactly the same examples.
  """
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f'data.supervision_rate must be in [0, 1], got {rate}.')
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
  mask = np.zeros(num_examples, bool)
  mask[rng.permutation(num_examples)[:round(rate * num_examples)]] = True
  return mask


def create_source(data_config: ml_collections.ConfigDict, split: str):
  """The random-access source of one split ('train' or 'test')."""
  if data_config.source == 'procedural':
    return procedural.ProceduralSource(
        num_examples=(data_config.num_train if split == 'train'
                      else data_config.num_test),
        image_size=data_config.image_size, seed=data_config.seed,
        split=split, labels=tuple(data_config.labels))
  if data_config.source in sources.SOURCES:
    return sources.create_source(data_config, split)
  raise ValueError(
      f'Unknown data.source {data_config.source!r}.'
      f'{errors.did_you_mean(data_config.source, SOURCES)} Available: '
      f'{SOURCES}.')


def image_shape(data_config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """(S, S, C) of the images: from the config when it fixes the channels
  (the paper configs do, so models can be built and benchmarked without the
  data), else from the first training example."""
  if data_config.get('channels', 0):
    return (data_config.image_size, data_config.image_size,
            data_config.channels)
  return tuple(create_source(data_config, 'train')[0]['image'].shape)


class _AddSupervision(grain.transforms.Map):
  """Marks which labels the model may see: 'labelled' (L,) bool.

  A label is seen when the example is in the supervised subset and the
  source knows it (sources may give 'known', e.g. blank CSV cells).
  """

  def __init__(self, mask: np.ndarray, keep_factors: bool):
    self._mask = mask
    self._keep_factors = keep_factors

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    element = dict(element)
    known = element.pop('known', np.ones_like(element['label'], bool))
    element['labelled'] = known & self._mask[int(element['index'])]
    if not self._keep_factors:
      element.pop('factors', None)
    return element


def _read_options(data_config) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=data_config.read_threads,
                           prefetch_buffer_size=data_config.prefetch_buffer)


def local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise ValueError(f'batch_size {global_batch} is not divisible by the '
                     f'{jax.process_count()} processes.')
  return global_batch // jax.process_count()


def create_train_dataset(config: ml_collections.ConfigDict):
  """Infinite, shuffled, batched training stream for this process.

  One seeded shuffle of the whole split, cut into global batches; process p
  of P reads only its part p of each (the lazy batches p, p + P, ... of
  size batch_size / P), which make_array_from_process_local_data puts
  together in process order. So the global batches, and the losses, do not
  depend on the number of processes.

  Returns a grain IterDataset; its iterator's state goes into checkpoints.
  """
  source = create_source(config.data, 'train')
  mask = supervision_mask(len(source), config.data.supervision_rate,
                          config.data.seed)
  ds = (grain.MapDataset.source(source).seed(config.seed).shuffle().repeat()
        .map(_AddSupervision(mask, keep_factors=False))
        .batch(local_batch_size(config.batch_size), drop_remainder=True))
  ds = ds[jax.process_index()::jax.process_count()]
  it_ds = ds.to_iter_dataset(_read_options(config.data))
  if config.data.worker_count > 0:
    it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=config.data.worker_count))
  return it_ds


def create_eval_dataset(config: ml_collections.ConfigDict, split: str = 'test',
                        batch_size: int | None = None,
                        keep_factors: bool = True):
  """One ordered pass over a split, all labels visible, final batch kept."""
  source = create_source(config.data, split)
  ds = (grain.MapDataset.source(source)
        .map(_AddSupervision(np.ones(len(source), bool), keep_factors))
        .batch(batch_size or config.eval.batch_size))
  return ds.to_iter_dataset(_read_options(config.data))
