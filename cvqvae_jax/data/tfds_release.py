"""Prepared TFDS datasets (`celeb_a`, `chexpert`) read with
`tfds.data_source`: array_record files, random access, no TensorFlow.

Images are read as their encoded bytes (`tfds.decode.SkipDecoding`) and
decoded by images.py in the grain workers, like the folder sources. The
annotations are scanned once per process to apply the label policies.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

from absl import logging
from etils import epath
import numpy as np

from cvqvae_jax import paths
from cvqvae_jax.data import policies
from cvqvae_jax.data import releases

TFDS_NAMES = {'celeba': 'celeb_a', 'chexpert': 'chexpert'}
# The release's test partition in TFDS's split names.
_TEST_SPLIT = {'celeb_a': 'test', 'chexpert': 'validation'}
_SCAN_CHUNK = 1024
# tfds chexpert: label values are indices into these names, one per column
# of policies.CHEXPERT_OBSERVATIONS; image_view 0 is frontal.
_CHEXPERT_VALUES = {'uncertain': -1.0, 'positive': 1.0, 'negative': 0.0,
                    'unmentioned': float('nan')}


def _prepare_hint(tfds_name: str) -> str:
  if tfds_name == 'chexpert':
    return ('put CheXpert-v1.0-small/ in the manual folder, then run tfds '
            "build chexpert --file_format=array_record --manual_dir=DIR (needs "
            'TensorFlow, once; data from ' + releases.CHEXPERT_URL + ')')
  return ('tfds build celeb_a --file_format=array_record (needs TensorFlow, '
          'once; data from ' + releases.CELEBA_URL + ')')


def open_splits(tfds_name: str, data_dir: str) -> dict[str, Any]:
  """{split: tfds ArrayRecordDataSource} with images left encoded."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir.rstrip('/') if paths.is_remote(data_dir or '') else (
      os.path.normpath(data_dir) if data_dir else data_dir)
  if data_dir and data_dir.rsplit('/', 1)[-1] == tfds_name:
    data_dir = data_dir.rsplit('/', 1)[0]  # DIR/celeb_a
  where = os.path.join(data_dir or '$TFDS_DATA_DIR or ~/tensorflow_datasets',
                       tfds_name)
  layout = (f'{where}/VERSION/dataset_info.json and {tfds_name}-SPLIT.'
            'array_record-* files (a TFDS dataset prepared in the array_record'
            ' format)')
  if data_dir and not epath.Path(data_dir, tfds_name).is_dir():
    raise releases.not_found(f'TFDS {tfds_name}', where, layout,
                             _prepare_hint(tfds_name))
  try:
    return tfds.data_source(
        tfds_name, data_dir=data_dir or None, download=False,
        decoders={'image': tfds.decode.SkipDecoding()})
  except Exception as e:  # pylint: disable=broad-except
    # tfds raises NotImplementedError, AssertionError, ... for a dataset
    # that is missing or prepared as tfrecord.
    raise releases.not_found(f'TFDS {tfds_name}', f'{where} ({e})', layout,
                             _prepare_hint(tfds_name)) from e


class TfdsReader:
  """item (split, record) -> encoded image bytes. Picklable: the data
  sources are reopened lazily in each grain worker."""

  def __init__(self, tfds_name: str, data_dir: str):
    self._args = (tfds_name, data_dir)
    self._splits = None

  def __getstate__(self):
    return {'_args': self._args, '_splits': None}

  def __call__(self, item) -> tuple[bytes, str]:
    if self._splits is None:
      self._splits = open_splits(*self._args)
    split, record = item
    return self._splits[split][record]['image'], (
        f'record {record} of TFDS {self._args[0]}/{split}')


def _scan(source, keys: Sequence[str]) -> list[dict]:
  """Every record's annotations (images dropped), read in chunks."""
  out = []
  for start in range(0, len(source), _SCAN_CHUNK):
    stop = min(start + _SCAN_CHUNK, len(source))
    records = source.__getitems__(list(range(start, stop)))
    out += [{k: r[k] for k in keys} for r in records]
  return out


def _celeba_table(records, labels) -> policies.LabelTable:
  names = list(records[0]['attributes']) if records else []
  attributes = {a: np.asarray([r['attributes'][a] for r in records])
                for a in names}
  return policies.celeba(attributes, labels)


def _chexpert_table(records, labels, view, value_names) -> policies.LabelTable:
  values = np.asarray([[_CHEXPERT_VALUES[value_names[v]] for v in r['label']]
                       for r in records], np.float64)
  values = values.reshape(len(records), len(policies.CHEXPERT_OBSERVATIONS))
  observations = dict(zip(policies.CHEXPERT_OBSERVATIONS, values.T))
  frontal = np.asarray([r['image_view'] == 0 for r in records])
  return policies.chexpert(observations, frontal, labels, view)


@functools.lru_cache(maxsize=4)
def tfds_release(name: str, data_dir: str, labels: tuple[str, ...],
                 view: str) -> releases.Release:
  """All splits of a prepared TFDS dataset as one Release."""
  tfds_name = TFDS_NAMES[name]
  splits = open_splits(tfds_name, data_dir)
  items, records = [], []
  for split in sorted(splits):
    keys = (('attributes',) if tfds_name == 'celeb_a'
            else ('label', 'image_view'))
    scanned = _scan(splits[split], keys)
    items += [(split, i) for i in range(len(scanned))]
    records += scanned
    logging.info('TFDS %s/%s: %d records scanned.', tfds_name, split,
                 len(scanned))
  if tfds_name == 'celeb_a':
    table = _celeba_table(records, labels)
  else:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    value_names = tfds.builder(tfds_name, data_dir=data_dir or None).info \
        .features['label'].feature.names
    table = _chexpert_table(records, labels, view, value_names)
  release_test = np.asarray([s == _TEST_SPLIT[tfds_name] for s, _ in items])
  return releases.Release(f'TFDS {tfds_name}', items, table, release_test,
                          channels=3 if tfds_name == 'celeb_a' else 1,
                          reader=TfdsReader(tfds_name, data_dir))
