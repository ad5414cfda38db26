"""Real-data sources by `data.source`: 'folder' (official release layouts),
'csv' (users' own data) and 'tfds' (prepared TFDS datasets).

Each is a random-access grain source of dicts: 'image' float32 (S, S, C) in
[-1, 1], 'label' int32 (L,), 'known' bool (L,) and 'index' int, over one
split. The split is seeded 80/20 of the examples the label policy kept
(docs/data.md), or the release's own partition (data.split='release'),
or the users' CSV `split` column when it has one.
"""

from __future__ import annotations

import functools
from typing import Any

from absl import logging
import ml_collections
import numpy as np

from cvqvae_jax.data import errors
from cvqvae_jax.data import images
from cvqvae_jax.data import policies
from cvqvae_jax.data import releases
from cvqvae_jax.data import tfds_release

SOURCES = ('folder', 'csv', 'tfds')
DATASETS = ('celeba', 'chexpert')
SPLIT_POLICIES = ('seeded', 'release')


class ImageSource:
  """One split of a release: decodes and preprocesses on access, so that the
  work runs in grain's read threads or worker processes."""

  def __init__(self, *, items, labels: np.ndarray, known: np.ndarray,
               reader, image_size: int, channels: int, crop: str,
               skip_unreadable: bool, description: str):
    self._items = items
    self._labels = labels.astype(np.int32)
    self._known = known.astype(bool)
    self._reader = reader
    self._size, self._channels, self._crop = image_size, channels, crop
    self._skip = skip_unreadable
    self._skipped = 0
    self._description = description

  def __len__(self) -> int:
    return len(self._items)

  def _image(self, i: int) -> np.ndarray:
    item = self._items[i]
    data, name = self._reader(item) if self._reader else (item, item)
    return images.load(data, name, self._size, self._channels, self._crop)

  def __getitem__(self, index) -> dict[str, Any]:
    index = int(index)
    for attempt in range(len(self)):
      i = (index + attempt) % len(self)
      try:
        image = self._image(i)
      except errors.UnreadableImageError as e:
        if not self._skip:
          raise
        # Replaced by the next readable example, so batches keep their shape
        # and a resumed run reads exactly what an uninterrupted one would.
        self._skipped += 1
        logging.warning('Skipped an unreadable image (%d skips in this '
                        'process so far): %s', self._skipped, e)
        continue
      return {'image': image, 'label': self._labels[i],
              'known': self._known[i], 'index': i}
    raise errors.UnreadableImageError(f'No readable image in {self}.')

  @property
  def skipped(self) -> int:
    """Unreadable images skipped by this process's copy of the source."""
    return self._skipped

  def __repr__(self) -> str:
    return (f'ImageSource({self._description}, {len(self)} examples, '
            f'{self._size} px, {self._channels} channels)')


def _check(data_config) -> None:
  if data_config.source not in SOURCES:
    raise ValueError(
        f'Unknown data.source {data_config.source!r}.'
        f'{errors.did_you_mean(data_config.source, ("procedural", *SOURCES))}'
        f' Available: {("procedural", *SOURCES)}.')
  if data_config.source != 'csv' and data_config.name not in DATASETS:
    raise ValueError(
        f'data.source={data_config.source!r} reads the datasets {DATASETS}; '
        f'got data.name={data_config.name!r}.'
        f'{errors.did_you_mean(data_config.name, DATASETS)} Use '
        "data.source='csv' for other data.")
  if data_config.split not in SPLIT_POLICIES:
    raise ValueError(f'data.split must be one of {SPLIT_POLICIES}, got '
                     f'{data_config.split!r}.')
  if not 0.0 < data_config.test_fraction < 1.0:
    raise ValueError('data.test_fraction must be in (0, 1), got '
                     f'{data_config.test_fraction}.')
  if data_config.channels not in (0, 1, 3):
    raise ValueError('data.channels must be 0 (the dataset\'s own), 1 or 3, '
                     f'got {data_config.channels}.')


@functools.lru_cache(maxsize=8)
def _release(source: str, name: str, data_dir: str, labels: tuple[str, ...],
             view: str) -> releases.Release:
  """Parsed once per process (train and test, model build, evaluation)."""
  if source == 'tfds':
    release = tfds_release.tfds_release(name, data_dir, labels, view)
  elif source == 'csv':
    release = releases.csv_folder(data_dir, labels)
  elif name == 'celeba':
    release = releases.celeba_folder(data_dir, labels)
  else:
    release = releases.chexpert_folder(data_dir, labels, view)
  logging.info('%s (data.source=%s), label policy:\n%s', release.name,
               source, policies.describe(release.table.counts))
  if not release.table.keep.any():
    raise errors.DatasetFormatError(
        f'{release.name}: the label policy kept no example of '
        f'{release.table.counts["rows"]} rows.')
  return release


def load_release(data_config) -> releases.Release:
  _check(data_config)
  return _release(data_config.source, data_config.name, data_config.data_dir,
                  tuple(data_config.labels), data_config.view)


def split_rows(release: releases.Release, split: str, data_config
               ) -> tuple[np.ndarray, dict[str, int]]:
  """Sorted row indices of `split` among the kept rows, and counts.

  Test rows with an unknown label are dropped: evaluation needs every label.
  """
  if split not in ('train', 'test'):
    raise ValueError(f'Unknown split {split!r}; expected train or test.')
  kept = np.flatnonzero(release.table.keep)
  use_column = data_config.source == 'csv' and release.release_test is not None
  if data_config.split == 'release' or use_column:
    if release.release_test is None:
      raise errors.DatasetFormatError(
          f'{release.name} has no test partition of its own (for CheXpert: '
          "valid.csv; for CSV data: a split column); use data.split='seeded'.")
    is_test = release.release_test[kept]
    how = 'the CSV split column' if use_column else 'the release partition'
  else:
    rng = np.random.default_rng(np.random.SeedSequence(
        [data_config.seed, 0x5B117]))
    is_test = np.zeros(len(kept), bool)
    is_test[rng.permutation(len(kept))[:round(data_config.test_fraction
                                              * len(kept))]] = True
    how = f'seeded {1 - data_config.test_fraction:.0%}/' \
          f'{data_config.test_fraction:.0%}'
  rows = kept[is_test] if split == 'test' else kept[~is_test]
  counts = {'split': how, 'examples': len(rows)}
  if split == 'test':
    complete = release.table.known[rows].all(axis=1)
    counts['dropped: a label unknown'] = int((~complete).sum())
    rows = rows[complete]
    counts['examples'] = len(rows)
  return rows, counts


def _channels(data_config, release) -> int:
  if data_config.channels:
    return data_config.channels
  if release.channels:
    return release.channels
  first = release.items[int(np.flatnonzero(release.table.keep)[0])]
  return images.channels_of(first)


def create_source(data_config: ml_collections.ConfigDict,
                  split: str) -> ImageSource:
  """The random-access source of one split ('train' or 'test')."""
  release = load_release(data_config)
  rows, counts = split_rows(release, split, data_config)
  if not len(rows):
    raise errors.DatasetFormatError(
        f'{release.name}: the {split} split is empty ({counts}).')
  labels, known = release.table.labels[rows], release.table.known[rows]
  balance = {l: f'y=1 {int((labels[:, i] * known[:, i]).sum())} / known '
                f'{int(known[:, i].sum())}'
             for i, l in enumerate(data_config.labels)}
  logging.info('%s %s split: %s; class balance: %s', release.name, split,
               counts, balance)
  return ImageSource(
      items=[release.items[r] for r in rows], labels=labels, known=known,
      reader=release.reader, image_size=data_config.image_size,
      channels=_channels(data_config, release), crop=data_config.crop,
      skip_unreadable=data_config.skip_unreadable,
      description=f'{release.name} {split}')
