"""Miniature releases in the official formats, for tests: CelebA
(img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt), CheXpert
(train.csv, valid.csv and the JPEG tree, with uncertain and blank values and
lateral views), users' CSV data, and TFDS array_record datasets written by
the real TFDS builders' own example generators (no TensorFlow)."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
from PIL import Image

from cvqvae_jax.data import policies

CHEXPERT_HEADER = ['Path', 'Sex', 'Age', 'Frontal/Lateral', 'AP/PA',
                   *policies.CHEXPERT_OBSERVATIONS]

# One cycle of CheXpert rows: (view, No Finding, Cardiomegaly, Atelectasis,
# Consolidation); other observations blank. Per cycle, for cardiomegaly:
# 2 lateral dropped, of 6 frontal: 2 y=1, 1 y=0, 1 uncertain, 1 blank,
# 1 "0.0 without No Finding".
CHEXPERT_CYCLE = (
    ('Frontal', '1.0', '', '', ''),
    ('Frontal', '', '1.0', '', ''),
    ('Frontal', '', '-1.0', '1.0', ''),
    ('Frontal', '', '0.0', '', '1.0'),
    ('Frontal', '', '', '-1.0', '-1.0'),
    ('Lateral', '1.0', '', '', ''),
    ('Lateral', '', '1.0', '', ''),
    ('Frontal', '', '1.0', '1.0', '1.0'),
)


def _image(rng, h, w, channels, label_bit=0) -> Image.Image:
  a = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
  a[: h // 3] = 255 * label_bit  # a visible band that follows a label
  return Image.fromarray(a[..., 0] if channels == 1 else a)


def make_celeba(root: str, n: int = 60, seed: int = 0,
                size=(178, 218)) -> dict:
  """Writes the official CelebA layout under root; returns the attributes
  ({name: (n,) int8 in {1, -1}}) and file names."""
  rng = np.random.default_rng(seed)
  names = list(policies.CELEBA_ATTRIBUTES)
  values = np.where(rng.random((n, len(names))) < 0.4, 1, -1).astype(np.int8)
  files = [f'{i + 1:06d}.jpg' for i in range(n)]
  os.makedirs(os.path.join(root, 'img_align_celeba'), exist_ok=True)
  glasses = names.index('Eyeglasses')
  for f, row in zip(files, values):
    _image(rng, size[1], size[0], 3, row[glasses] > 0).save(
        os.path.join(root, 'img_align_celeba', f), quality=90)
  with open(os.path.join(root, 'list_attr_celeba.txt'), 'w') as out:
    out.write(f'{n}\n' + ' '.join(names) + ' \n')
    for f, row in zip(files, values):
      out.write(f + ' ' + ' '.join(f'{v:2d}' for v in row) + '\n')
  with open(os.path.join(root, 'list_eval_partition.txt'), 'w') as out:
    for i, f in enumerate(files):
      out.write(f'{f} {0 if i < 0.8 * n else (1 if i < 0.9 * n else 2)}\n')
  # The other annotation files of the release (read by the TFDS builder).
  with open(os.path.join(root, 'list_landmarks_align_celeba.txt'), 'w') as out:
    out.write(f'{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y '
              'leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n')
    for f in files:
      out.write(f + '  69  109  106  113   77  142   73  152  108  154\n')
  with open(os.path.join(root, 'identity_CelebA.txt'), 'w') as out:
    for i, f in enumerate(files):
      out.write(f'{f} {i // 3 + 1}\n')
  return {'attributes': dict(zip(names, values.T)), 'files': files}


def make_celeba_csv(root: str, n: int = 30, seed: int = 1) -> dict:
  """The widely mirrored CelebA archive: list_attr_celeba.csv
  ('image_id,5_o_Clock_Shadow,...' then '000001.jpg,-1,1,...'),
  list_eval_partition.csv ('image_id,partition') and the images in
  img_align_celeba/img_align_celeba/; the same data in the text layout
  goes to root/_txt."""
  tmp = os.path.join(root, '_txt')
  made = make_celeba(tmp, n=n, seed=seed)
  names = list(policies.CELEBA_ATTRIBUTES)
  os.makedirs(os.path.join(root, 'img_align_celeba'), exist_ok=True)
  shutil.copytree(os.path.join(tmp, 'img_align_celeba'),
                  os.path.join(root, 'img_align_celeba', 'img_align_celeba'))
  values = np.stack([made['attributes'][a] for a in names], 1)
  with open(os.path.join(root, 'list_attr_celeba.csv'), 'w') as out:
    out.write('image_id,' + ','.join(names) + '\n')
    for f, row in zip(made['files'], values):
      out.write(f + ',' + ','.join(str(int(v)) for v in row) + '\n')
  with open(os.path.join(tmp, 'list_eval_partition.txt')) as src, open(
      os.path.join(root, 'list_eval_partition.csv'), 'w') as out:
    out.write('image_id,partition\n')
    for line in src:
      out.write(','.join(line.split()) + '\n')
  return made


def _chexpert_rows(cycles: int, split: str, folder: str) -> list[list[str]]:
  rows = []
  for i in range(cycles * len(CHEXPERT_CYCLE)):
    view, nf, card, atel, cons = CHEXPERT_CYCLE[i % len(CHEXPERT_CYCLE)]
    if split == 'valid':  # valid.csv holds only 0.0 / 1.0
      card, atel, cons = ((v if v == '1.0' else '0.0') for v in
                          (card, atel, cons))
    obs = {o: '' for o in policies.CHEXPERT_OBSERVATIONS}
    obs.update({'No Finding': nf, 'Cardiomegaly': card, 'Atelectasis': atel,
                'Consolidation': cons})
    image = 'view2_lateral.jpg' if view == 'Lateral' else 'view1_frontal.jpg'
    path = f'{folder}/{split}/patient{i + 1:05d}/study1/{image}'
    rows.append([path, 'Female' if i % 2 else 'Male', str(40 + i % 50), view,
                 'AP' if view == 'Frontal' else '', *obs.values()])
  return rows


def make_chexpert(parent: str, folder: str = 'CheXpert-v1.0-small',
                  cycles: int = 8, valid_cycles: int = 1, seed: int = 0,
                  size=(48, 58)) -> str:
  """Writes parent/folder/{train.csv,valid.csv,train/,valid/}; returns the
  release folder. Images are grey JPEGs of `size` (w, h)."""
  rng = np.random.default_rng(seed)
  release = os.path.join(parent, folder)
  for split, n in (('train', cycles), ('valid', valid_cycles)):
    rows = _chexpert_rows(n, split, folder)
    with open(os.path.join(_mkdir(release), f'{split}.csv'), 'w',
              newline='') as out:
      writer = csv.writer(out)
      writer.writerow(CHEXPERT_HEADER)
      writer.writerows(rows)
    for row in rows:
      path = os.path.join(parent, row[0])
      os.makedirs(os.path.dirname(path), exist_ok=True)
      _image(rng, size[1], size[0], 1, row[7] == '1.0').save(path)
  return release


def _mkdir(path: str) -> str:
  os.makedirs(path, exist_ok=True)
  return path


def make_csv(root: str, n: int = 40, seed: int = 0, split: bool = False,
             labels=('tumour', 'stained')) -> dict:
  """Users' data: grey images of mixed sizes and formats, labels.csv with
  1 / 0 / blank cells (and a split column when asked)."""
  rng = np.random.default_rng(seed)
  values = rng.integers(0, 2, (n, len(labels)))
  blank = rng.random((n, len(labels))) < 0.25
  os.makedirs(os.path.join(root, 'images'), exist_ok=True)
  rows = []
  for i in range(n):
    h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
    name = f'images/img{i:03d}.{"png" if i % 3 else "jpg"}'
    _image(rng, h, w, 1, values[i, 0]).save(os.path.join(root, name))
    cells = ['' if blank[i, j] else str(values[i, j])
             for j in range(len(labels))]
    rows.append([name, *cells] + (['test' if i % 5 == 0 else 'train']
                                  if split else []))
  with open(os.path.join(root, 'labels.csv'), 'w', newline='') as out:
    writer = csv.writer(out)
    writer.writerow(['path', *labels] + (['split'] if split else []))
    writer.writerows(rows)
  return {'values': values, 'blank': blank, 'labels': labels}


def make_tfds(data_dir: str, name: str, release: str) -> None:
  """Prepares TFDS `name` ('celeb_a' or 'chexpert') as array_record in
  data_dir from a fabricated release, with the registered builder's own
  `_generate_examples` (only the download / manual-dir step is replaced,
  because it needs TensorFlow or the network)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  base = type(tfds.builder(name, data_dir=data_dir))
  with tfds.core.registered.skip_registration():

    class Fake(base):  # pylint: disable=missing-class-docstring

      def _split_generators(self, dl_manager):
        del dl_manager
        if name == 'chexpert':
          csvs = {'train': 'train.csv', 'validation': 'valid.csv'}
          return {s: self._generate_examples(
              imgs_path=os.path.dirname(release),
              csv_path=os.path.join(release, f)) for s, f in csvs.items()}
        dirs = {'list_eval_partition': 'list_eval_partition.txt',
                'list_attr_celeba': 'list_attr_celeba.txt',
                'landmarks_celeba': 'list_landmarks_align_celeba.txt',
                'identity_celeba': 'identity_CelebA.txt'}
        dirs = {k: os.path.join(release, v) for k, v in dirs.items()}
        folder = os.path.join(release, 'img_align_celeba')
        images = {f: os.path.join(folder, f) for f in os.listdir(folder)}
        return {s: self._generate_examples(file_id=i, downloaded_dirs=dirs,
                                           downloaded_images=images)
                for i, s in enumerate(('train', 'validation', 'test'))}

  Fake.name = name
  Fake(data_dir=data_dir, file_format='array_record').download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
