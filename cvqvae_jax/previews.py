"""Pictures of training: reconstructions and label swaps.

`samples.png` at the end of training, and every config.sample_every_steps
`samples/step_N.png` (and a TensorBoard image): inputs and their reconstructions, then for each label
the paper's swap (fake+ = z_0, c_1, y = 1; fake- = z_1, c_0, y = 0), with the
ideal swap rendered from the generator's factors on the procedural benchmark.
"""

from __future__ import annotations

from typing import Sequence

from etils import epath
import numpy as np
from PIL import Image, ImageDraw

from cvqvae_jax import evaluation
from cvqvae_jax import metrics

PREVIEW = 'samples.png'  # The end of training's picture, in the workdir.


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] float (..., H, W, C) -> uint8 RGB (grey is repeated)."""
  images = np.asarray(images, np.float32)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(rows: Sequence[tuple[str, np.ndarray]], scale: int = 1,
               label_width: int = 120, pad: int = 2,
               column_titles: Sequence[str] | None = None,
               title: str | None = None) -> Image.Image:
  """A grid with one titled row per (title, images (N, H, W, C)), optional
  titles above the columns and a title line above everything."""
  n = max(len(imgs) for _, imgs in rows)
  h, w = rows[0][1].shape[1] * scale, rows[0][1].shape[2] * scale
  top = (14 if title else 0) + (14 if column_titles else 0)
  canvas = Image.new('RGB', (label_width + n * (w + pad),
                             top + len(rows) * (h + pad)), 'white')
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((4, 1), title, fill='black')
  for i, text in enumerate(column_titles or ()):
    draw.text((label_width + i * (w + pad) + 2, top - 13), text,
              fill='black')
  for r, (row_title, imgs) in enumerate(rows):
    y0 = top + r * (h + pad)
    draw.text((4, y0 + h // 2 - 6), row_title, fill='black')
    for i, img in enumerate(to_uint8(imgs)):
      tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
      canvas.paste(tile, (label_width + i * (w + pad), y0))
  return canvas


def swap_rows(codec, params, batch, label: int, name: str, i0, i1,
              batch_size: int) -> list[tuple[str, np.ndarray]]:
  """The rows of a swap picture for pairs (i0[j], i1[j]) of `batch` with
  y = 0 and y = 1 for label index `label`: x0, x1, fake+ = D(z0, c1, y=1),
  fake- = D(z1, c0, y=0), and on the procedural benchmark the ideal swap
  under each fake."""
  x = batch['image']
  plus, minus = evaluation.swap_fakes(codec, params, batch, label, i0, i1,
                                      batch_size)
  rows = {'plus': [(f'fake+ {name} (z0,c1,y=1)', plus)],
          'minus': [(f'fake- {name} (z1,c0,y=0)', minus)]}
  if 'factors' in batch:
    for key, (b, d) in (('plus', (i0, i1)), ('minus', (i1, i0))):
      rows[key].append((f'ideal{"+" if key == "plus" else "-"} {name}',
                        evaluation.ideal_swaps(batch['factors'], b, d, name,
                                               x.shape[1])))
  return ([(f'x0 ({name}=0)', x[i0]), (f'x1 ({name}=1)', x[i1])]
          + rows['plus'] + rows['minus'])


def preview_grid(codec, params, config, num: int = 8,
                 pool: int = 200) -> Image.Image:
  """Inputs, reconstructions and each label's swaps (with the ideal swaps on
  the procedural benchmark) of held-out images, as one labelled grid.

  codec: an evaluation.Codec (jitted encode/decode of the model). The
  `pool` first test images are the evaluations' (evaluation.held_out_examples:
  read once per process, not again for every picture).
  """
  batch = evaluation.held_out_examples(config, pool)
  x, labels = batch['image'], batch['label']
  bs = config.eval.batch_size
  run = lambda fn, *arrays: metrics.batched(fn, arrays, bs)
  recon = run(lambda a: codec.reconstruct(params, a), x[:num])
  rows = [('input', x[:num]), ('reconstruction', recon)]
  for l, name in enumerate(config.data.labels):
    i0 = np.flatnonzero(labels[:, l] == 0)[:num]
    i1 = np.flatnonzero(labels[:, l] == 1)[:num]
    k = min(len(i0), len(i1))
    if not k:
      continue
    rows += swap_rows(codec, params, batch, l, name, i0[:k], i1[:k], bs)
  return image_grid(rows, scale=max(1, 96 // x.shape[1]))


def save_png(image: Image.Image, path) -> str:
  """Writes a PNG to a local or remote (etils.epath) path."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    image.save(f, format='PNG')
  return str(path)


def write_preview(directory: str, codec, params, config,
                  num: int = 8, pool: int = 200) -> str:
  """Writes `directory/samples.png` (PREVIEW) and returns its path."""
  return save_png(preview_grid(codec, params, config, num, pool),
                  epath.Path(directory) / PREVIEW)


def write_step_samples(workdir: str, codec, params, config, step: int,
                       writer=None) -> str:
  """The preview grid of `step` as WORKDIR/samples/step_N.png and, given a
  metric_writers.MetricWriter, as the TensorBoard image 'samples'."""
  grid = preview_grid(codec, params, config)
  if writer is not None:
    writer.write_image(step, 'samples', np.asarray(grid))
  return save_png(grid, epath.Path(workdir) / 'samples' / f'step_{step}.png')
