"""Throughput of the CelebA folder loader on 178x218 JPEGs.

  python experiments/loader_throughput.py [--num_images=512] [--workers=1,2]

Fabricates `num_images` aligned-CelebA-sized JPEGs (smooth random images, so
that their entropy and file size resemble photographs rather than noise) in
the official layout, then measures
  1. one worker: images/s of `source[i]` (read, decode, centre-crop, resize
     to 128, scale to [-1, 1]) in this process, one thread;
  2. the training pipeline (pipeline.create_train_dataset, batch 32) with
     data.worker_count grain worker processes: images/s delivered.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cvqvae_jax import config_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from cvqvae_jax.data import policies  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_images', 512, 'JPEGs to fabricate.')
flags.DEFINE_list('workers', ['1', '2'], 'grain worker counts to time.')
flags.DEFINE_integer('batches', 40, 'Batches timed per worker count.')
flags.DEFINE_integer('image_size', 128, 'Output size (paper: 128).')


def smooth_image(rng, h=218, w=178) -> np.ndarray:
  """A photograph-like image: a bicubic-upsampled coarse field plus mild
  noise (about 8-10 kB as a quality-95 JPEG, like CelebA's)."""
  coarse = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
  img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC),
                   np.float32)
  img += rng.normal(0, 2, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def fabricate(root: str, n: int) -> None:
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, 'img_align_celeba'))
  names = [f'{i + 1:06d}.jpg' for i in range(n)]
  for name in names:
    Image.fromarray(smooth_image(rng)).save(
        os.path.join(root, 'img_align_celeba', name), quality=95)
  with open(os.path.join(root, 'list_attr_celeba.txt'), 'w') as f:
    f.write(f'{n}\n' + ' '.join(policies.CELEBA_ATTRIBUTES) + '\n')
    for name in names:
      values = rng.choice([-1, 1], len(policies.CELEBA_ATTRIBUTES))
      f.write(name + ' ' + ' '.join(f'{v:2d}' for v in values) + '\n')
  with open(os.path.join(root, 'list_eval_partition.txt'), 'w') as f:
    f.writelines(f'{name} 0\n' for name in names)


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as root:
    fabricate(root, FLAGS.num_images)
    sizes = [os.path.getsize(os.path.join(root, 'img_align_celeba', f))
             for f in os.listdir(os.path.join(root, 'img_align_celeba'))]
    config = config_files.load(os.path.join(ROOT, 'configs', 'paper.py')
                               ).get_config('celeba', ('glasses',))
    config.data.data_dir = root
    config.data.image_size = FLAGS.image_size
    source = pipeline.create_source(config.data, 'train')
    for i in range(min(32, len(source))):  # Warm the page cache.
      source[i]
    start = time.perf_counter()
    for i in range(len(source)):
      source[i]
    rate = len(source) / (time.perf_counter() - start)
    print(json.dumps({'measure': 'one worker, one thread',
                      'images_per_s': round(rate, 1),
                      'ms_per_image': round(1000 / rate, 3),
                      'jpeg_kb_mean': round(np.mean(sizes) / 1024, 1),
                      'image_size': FLAGS.image_size}), flush=True)
    for workers in map(int, FLAGS.workers):
      config.data.worker_count = workers
      config.data.read_threads = 1
      it = iter(pipeline.create_train_dataset(config))
      next(it)  # Worker start-up is not timed.
      start = time.perf_counter()
      for _ in range(FLAGS.batches):
        next(it)
      rate = FLAGS.batches * config.batch_size / (time.perf_counter() - start)
      print(json.dumps({'measure': 'training pipeline',
                        'worker_count': workers,
                        'images_per_s': round(rate, 1),
                        'images_per_s_per_worker': round(rate / workers, 1),
                        'batch_size': config.batch_size}), flush=True)
      del it


if __name__ == '__main__':
  app.run(main)
