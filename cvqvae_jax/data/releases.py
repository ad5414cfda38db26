"""Readers of the datasets' official release layouts and of users' CSVs.

Each reader parses the annotation files of one layout into a `Release`: one
item per kept example (the image path), its labels by the dataset's policy
(policies.py) and the release's own test partition. Images are not opened
here; sources.py decodes them lazily in grain workers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Any, Sequence

from etils import epath
import numpy as np

from cvqvae_jax import paths
from cvqvae_jax.data import errors
from cvqvae_jax.data import policies

CELEBA_URL = ('http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html ("Align&'
              'Cropped Images": img_align_celeba.zip, Anno/'
              'list_attr_celeba.txt, Eval/list_eval_partition.txt)')
CHEXPERT_URL = ('https://stanfordmlgroup.github.io/competitions/chexpert/ '
                '(register, accept the Research Use Agreement, then download '
                'CheXpert-v1.0-small or CheXpert-v1.0)')
CELEBA_LAYOUT = ('DATA_DIR/img_align_celeba/000001.jpg ..., '
                 'DATA_DIR/list_attr_celeba.txt, '
                 'DATA_DIR/list_eval_partition.txt (the files may also sit in '
                 "the Google Drive release's Img/, Anno/ and Eval/ folders; "
                 "or the widely mirrored archive's list_attr_celeba.csv and "
                 'list_eval_partition.csv, with img_align_celeba/'
                 'img_align_celeba/)')
CHEXPERT_LAYOUT = ('DATA_DIR/CheXpert-v1.0-small/{train.csv,valid.csv,train/,'
                   'valid/} (DATA_DIR may also be the CheXpert-v1.0-small or '
                   'CheXpert-v1.0 folder itself)')
CSV_LAYOUT = ('DATA_DIR/labels.csv with a "path" column (image paths '
              'relative to DATA_DIR), one column per label holding 1, 0 or '
              'nothing, and optionally a "split" column (train or test)')


@dataclasses.dataclass
class Release:
  """The annotations of one dataset, before the train/test split."""
  name: str
  items: list[Any]             # per row: image path (or a tfds record key)
  table: policies.LabelTable   # over the same rows
  release_test: np.ndarray | None  # (n,) bool: the release's test partition
  channels: int                # 3 colour, 1 grey, 0 from the first image
  reader: Any = None           # item -> (path or bytes, name); None: paths


def _open(path: str):
  """A text file, local or on any etils.epath store (csv-ready: no newline
  translation)."""
  return io.StringIO(epath.Path(path).read_text(), newline='')


def not_found(dataset: str, path: str, layout: str,
              obtain: str) -> errors.DatasetNotFoundError:
  return errors.DatasetNotFoundError(
      f'{dataset} not found: looked for {path}. Expected layout: {layout}. '
      f'Obtain the data from {obtain}, then set --config.data.data_dir.')


def check_data_dir(dataset: str, data_dir: str, layout: str, obtain: str,
                   env: str = '') -> str:
  if not data_dir:
    hint = f' (or the environment variable {env})' if env else ''
    raise errors.DatasetNotFoundError(
        f'{dataset}: data.data_dir is not set. Pass --config.data.data_dir='
        f'DIR{hint}. Expected layout: {layout}. Obtain the data from '
        f'{obtain}.')
  data_dir = paths.absolute(data_dir)
  if not epath.Path(data_dir).is_dir():
    raise not_found(dataset, data_dir, layout, obtain)
  return data_dir


# ---- CelebA ---------------------------------------------------------------

def _find(data_dir: str, name: str, subdirs: Sequence[str]) -> str | None:
  for sub in ('', *subdirs):
    path = os.path.join(data_dir, sub, name)
    if epath.Path(path).exists():
      return path
  return None


def read_celeba_attributes(path: str) -> tuple[list[str], dict]:
  """list_attr_celeba.txt: a count line, a header of 40 names, then rows
  'NAME.jpg  -1  1 ...' separated by one or more spaces.

  Returns (file names, {attribute: (n,) int8 in {1, -1}}).
  """
  with _open(path) as f:
    lines = [l.split() for l in f if l.strip()]
  where = f'{path} (CelebA list_attr_celeba.txt)'
  if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
    raise errors.DatasetFormatError(
        f'{where}: the first line must be the number of images.')
  names, rows = lines[1], lines[2:]
  if int(lines[0][0]) != len(rows):
    raise errors.DatasetFormatError(
        f'{where}: the first line says {lines[0][0]} images, the file lists '
        f'{len(rows)}.')
  for i, row in enumerate(rows):
    if len(row) != len(names) + 1:
      raise errors.DatasetFormatError(
          f'{where}, line {i + 3}: {len(row) - 1} values for '
          f'{len(names)} attributes.')
  # One C-level parse of every value (a list of lists takes seconds).
  try:
    values = np.fromstring(' '.join(' '.join(r[1:]) for r in rows),
                           dtype=np.int8, sep=' ')
  except ValueError as e:  # A value that is not an integer (numpy 2).
    raise errors.DatasetFormatError(f'{where}: values must be 1 or -1.') from e
  if values.size != len(rows) * len(names):  # numpy 1 stops early instead.
    raise errors.DatasetFormatError(f'{where}: values must be 1 or -1.')
  values = values.reshape(len(rows), len(names))
  if not np.isin(values, (1, -1)).all():
    raise errors.DatasetFormatError(f'{where}: values must be 1 or -1.')
  return [r[0] for r in rows], dict(zip(names, values.T))


def read_celeba_attributes_csv(path: str) -> tuple[list[str], dict]:
  """list_attr_celeba.csv (the widely mirrored archive): a header
  'image_id,5_o_Clock_Shadow,...', then rows '000001.jpg,-1,1,...'.

  Returns (file names, {attribute: (n,) int8 in {1, -1}}), as
  read_celeba_attributes.
  """
  where = f'{path} (CelebA list_attr_celeba.csv)'
  with _open(path) as f:
    rows = [r for r in csv.reader(f) if r]
  if not rows or rows[0][0].strip() != 'image_id':
    raise errors.DatasetFormatError(
        f'{where}: the first line must be the header image_id,ATTRIBUTE,...')
  names = [n.strip() for n in rows[0][1:]]
  for i, row in enumerate(rows[1:]):
    if len(row) != len(names) + 1:
      raise errors.DatasetFormatError(
          f'{where}, line {i + 2}: {len(row) - 1} values for '
          f'{len(names)} attributes.')
  try:
    values = np.asarray([[int(v) for v in r[1:]] for r in rows[1:]],
                        np.int8).reshape(len(rows) - 1, len(names))
  except ValueError as e:
    raise errors.DatasetFormatError(f'{where}: values must be 1 or -1.') from e
  if not np.isin(values, (1, -1)).all():
    raise errors.DatasetFormatError(f'{where}: values must be 1 or -1.')
  return [r[0].strip() for r in rows[1:]], dict(zip(names, values.T))


def read_celeba_partition_csv(path: str) -> dict[str, int]:
  """list_eval_partition.csv: 'image_id,partition', then '000001.jpg,0'."""
  with _open(path) as f:
    rows = [r for r in csv.reader(f) if r]
  if not rows or [c.strip() for c in rows[0]] != ['image_id', 'partition']:
    raise errors.DatasetFormatError(
        f'{path}: the first line must be the header image_id,partition.')
  try:
    return {r[0].strip(): int(r[1]) for r in rows[1:]}
  except (ValueError, IndexError) as e:
    raise errors.DatasetFormatError(
        f'{path}: each row must be NAME.jpg,0|1|2.') from e


def read_celeba_partition(path: str) -> dict[str, int]:
  """list_eval_partition.txt: 'NAME.jpg 0' (0 train, 1 valid, 2 test)."""
  with _open(path) as f:
    return {name: int(part) for name, part in (l.split() for l in f
                                               if l.strip())}


def celeba_folder(data_dir: str, labels: Sequence[str]) -> Release:
  """The official CelebA release: aligned images and the attribute list."""
  data_dir = check_data_dir('CelebA', data_dir, CELEBA_LAYOUT, CELEBA_URL,
                            env='CELEBA_DIR')
  attr = (_find(data_dir, 'list_attr_celeba.txt', ('Anno',))
          or _find(data_dir, 'list_attr_celeba.csv', ('Anno',)))
  images = _find(data_dir, 'img_align_celeba', ('Img',))
  part = (_find(data_dir, 'list_eval_partition.txt', ('Eval',))
          or _find(data_dir, 'list_eval_partition.csv', ('Eval',)))
  for found, name in ((attr, 'list_attr_celeba.txt'),
                      (images, 'img_align_celeba/'),
                      (part, 'list_eval_partition.txt')):
    if found is None:
      raise not_found('CelebA', os.path.join(data_dir, name), CELEBA_LAYOUT,
                      CELEBA_URL)
  if not epath.Path(images).is_dir():
    raise not_found('CelebA', images + ' (a folder; unzip '
                    'img_align_celeba.zip)', CELEBA_LAYOUT, CELEBA_URL)
  nested = os.path.join(images, 'img_align_celeba')
  if epath.Path(nested).is_dir():  # The archive's img_align_celeba/img_align_celeba.
    images = nested
  files, attributes = (read_celeba_attributes_csv(attr)
                       if attr.endswith('.csv')
                       else read_celeba_attributes(attr))
  partition = (read_celeba_partition_csv(part) if part.endswith('.csv')
               else read_celeba_partition(part))
  missing = [f for f in files if f not in partition]
  if missing:
    raise errors.DatasetFormatError(
        f'{part} has no partition for {len(missing)} images of {attr}, e.g. '
        f'{missing[0]}.')
  return Release('CelebA', [os.path.join(images, f) for f in files],
                 policies.celeba(attributes, labels),
                 np.asarray([partition[f] == 2 for f in files]), channels=3)


# ---- CheXpert -------------------------------------------------------------

def find_chexpert_release(data_dir: str) -> str:
  """The folder holding train.csv: data_dir itself or a CheXpert-v1.0*
  folder inside it."""
  data_dir = check_data_dir('CheXpert', data_dir, CHEXPERT_LAYOUT,
                            CHEXPERT_URL, env='CHEXPERT_DIR')
  if epath.Path(data_dir, 'train.csv').is_file():
    return data_dir
  for name in sorted(p.name for p in epath.Path(data_dir).iterdir()):
    candidate = os.path.join(data_dir, name)
    if (name.lower().startswith('chexpert')
        and epath.Path(candidate, 'train.csv').is_file()):
      return candidate
  raise not_found('CheXpert', os.path.join(data_dir, 'train.csv') + ' and '
                  + os.path.join(data_dir, 'CheXpert-v1.0*', 'train.csv'),
                  CHEXPERT_LAYOUT, CHEXPERT_URL)


def chexpert_image_path(release: str, path: str) -> str:
  """CSV paths start with the release folder's name ('CheXpert-v1.0-small/
  train/patient00001/study1/view1_frontal.jpg'): resolve them inside
  `release`, whatever the folder is called on disk."""
  parts = path.replace('\\', '/').split('/')
  if parts[0].lower().startswith('chexpert'):
    parts = parts[1:]
  return os.path.join(release, *parts)


def read_chexpert_csv(path: str, labels: Sequence[str]) -> dict[str, Any]:
  """train.csv / valid.csv -> {'Path': [...], 'frontal': (n,) bool,
  observation: (n,) float with nan for blank cells}."""
  with _open(path) as f:
    reader = csv.DictReader(f)
    columns = list(reader.fieldnames or ())
    required = ('Path', 'Frontal/Lateral', policies.CHEXPERT_NO_FINDING)
    for name in required:
      if name not in columns:
        raise errors.DatasetFormatError(
            f'{path}: no column {name!r} (columns there: '
            f'{", ".join(columns)}). Is this a CheXpert CSV?')
    wanted = [policies.CHEXPERT_NO_FINDING] + [
        policies.chexpert_column(l, columns[5:]) for l in labels]
    rows = list(reader)
  out: dict[str, Any] = {'Path': [r['Path'] for r in rows],
                         'frontal': np.asarray(
                             [r['Frontal/Lateral'] == 'Frontal'
                              for r in rows], bool)}
  for name in wanted:
    try:
      out[name] = np.asarray([policies.parse_chexpert_value(r[name] or '')
                              for r in rows], np.float64)
    except ValueError as e:
      raise errors.DatasetFormatError(f'{path}, column {name!r}: {e}') from e
  return out


def chexpert_folder(data_dir: str, labels: Sequence[str],
                    view: str) -> Release:
  """The official CheXpert release (v1.0 or small): train.csv + valid.csv.
  valid.csv is the release's test partition (used with data.split =
  'release')."""
  release = find_chexpert_release(data_dir)
  parts = [read_chexpert_csv(os.path.join(release, 'train.csv'), labels)]
  valid = os.path.join(release, 'valid.csv')
  if epath.Path(valid).is_file():
    parts.append(read_chexpert_csv(valid, labels))
  merged = {k: (sum((p[k] for p in parts), []) if k == 'Path'
                else np.concatenate([p[k] for p in parts])) for k in parts[0]}
  table = policies.chexpert(merged, merged['frontal'], labels, view)
  is_valid = np.arange(len(merged['Path'])) >= len(parts[0]['Path'])
  return Release('CheXpert', [chexpert_image_path(release, p)
                              for p in merged['Path']],
                 table, is_valid if len(parts) > 1 else None, channels=1)


# ---- users' own data ------------------------------------------------------

def csv_folder(data_dir: str, labels: Sequence[str]) -> Release:
  """DATA_DIR/labels.csv (docs/data.md): path, label columns, split."""
  data_dir = check_data_dir('CSV dataset', data_dir, CSV_LAYOUT,
                            'your own images')
  path = os.path.join(data_dir, 'labels.csv')
  if not epath.Path(path).is_file():
    raise not_found('CSV dataset', path, CSV_LAYOUT, 'your own images')
  with _open(path) as f:
    reader = csv.DictReader(f)
    columns = [c.strip() for c in reader.fieldnames or ()]
    rows = [{k.strip(): (v or '') for k, v in r.items() if k} for r in reader]
  for name in ('path', *labels):
    if name not in columns:
      raise errors.DatasetFormatError(
          f'{path}: no column {name!r}.{errors.did_you_mean(name, columns)} '
          f'The columns are: {", ".join(columns)}. Set --config.data.labels '
          'to label columns.')
  values = {l: [policies.parse_binary(r[l], f'{path}, line {i + 2}, column '
                                      f'{l!r}') for i, r in enumerate(rows)]
            for l in labels}
  release_test = None
  if 'split' in columns:
    splits = [r['split'].strip().lower() for r in rows]
    bad = [(i, s) for i, s in enumerate(splits) if s not in ('train', 'test')]
    if bad:
      raise errors.DatasetFormatError(
          f'{path}, line {bad[0][0] + 2}: split {bad[0][1]!r} is not train '
          'or test.')
    release_test = np.asarray([s == 'test' for s in splits])
  items = [os.path.join(data_dir, r['path'].strip()) for r in rows]
  return Release('CSV dataset ' + path, items,
                 policies.binary_columns(values, labels), release_test,
                 channels=0)
