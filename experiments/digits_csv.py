r"""Real images no one here drew: scikit-learn's handwritten digits as a CSV
dataset (docs/data.md, data.source=csv).

sklearn.datasets.load_digits ships with scikit-learn (1797 grey 8x8 scans of
handwritten digits, 0..16 ink levels; no download). This writes a balanced
subset, the digit 7 against --negatives (default 1, the most similar
stroke), upscaled bilinearly to --size px, as

  DIR/images/0000.png ...   8-bit grey PNGs, white ink on black
  DIR/labels.csv            path, is_seven (1/0), digit

No split column: the csv source splits the kept rows seeded 80/20
(data.split='seeded'). With several negative digits each is subsampled so
that the negatives together match the sevens.

scikit-learn is needed only here, not by the project:

  pip install scikit-learn
  python experiments/digits_csv.py --out=/tmp/digits
  python -m cvqvae_jax.main --config=configs/default.py --workdir=/tmp/digits_run \
      --config.data.source=csv --config.data.name=digits \
      --config.data.data_dir=/tmp/digits --config.data.labels="('is_seven',)" \
      --config.data.channels=1 --config.num_train_steps=20
"""

import argparse
import csv
import os

import numpy as np
from PIL import Image


def write_digits(out: str, size: int = 32, positive: int = 7,
                 negatives=(1,), seed: int = 0) -> dict[str, int]:
  """Writes the PNGs and labels.csv; returns {'positive': n, 'negative': n}."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images, targets = digits.images, digits.target
  rng = np.random.default_rng(seed)
  pos = np.flatnonzero(targets == positive)
  per_negative = int(np.ceil(len(pos) / len(negatives)))
  neg = np.concatenate([
      rng.permutation(np.flatnonzero(targets == d))[:per_negative]
      for d in negatives])[:len(pos)]
  rows = np.sort(np.concatenate([pos, neg]))
  os.makedirs(os.path.join(out, 'images'), exist_ok=True)
  with open(os.path.join(out, 'labels.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'is_seven', 'digit'])
    for i in rows:
      grey = np.round(images[i] * (255.0 / 16.0)).astype(np.uint8)
      image = Image.fromarray(grey, 'L').resize((size, size),
                                                Image.Resampling.BILINEAR)
      path = os.path.join('images', f'{i:04d}.png')
      image.save(os.path.join(out, path))
      writer.writerow([path, int(targets[i] == positive), int(targets[i])])
  return {'positive': len(pos), 'negative': len(neg)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='output folder (DIR)')
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--negatives', default='1',
                      help='comma-separated digits for is_seven = 0')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  negatives = tuple(int(d) for d in args.negatives.split(','))
  if 7 in negatives:
    parser.error('--negatives must not contain 7')
  counts = write_digits(args.out, args.size, 7, negatives, args.seed)
  print(f"Wrote {counts['positive']} sevens and {counts['negative']} of "
        f"{negatives} to {os.path.abspath(args.out)} (labels.csv, images/).")


if __name__ == '__main__':
  main()
