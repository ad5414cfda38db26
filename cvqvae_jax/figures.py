"""The paper's figures (section 3) for --mode=figures, as labelled PNG grids
in WORKDIR/figures/:

  swaps_LABEL.png           Figs. 2-4: fake+ = D(z_0, c_1, y=1) and
                            fake- = D(z_1, c_0, y=0), with the ideal swap
                            on the procedural benchmark
  difference_LABEL.png      Fig. 5 (presence labels): where the reconstruction
                            and its y = 0 version differ, in green
  interpolation_LABEL_yV.png  Fig. 6: D(z_1, y_1, c_1 + alpha (c_2 - c_1))
  scaling_LABEL.png         Fig. 7: D(z, y, lambda c), y = 1
  multi_swap.png            Fig. 8: two labels moved at once
  encoder_region.png        model.encoder_masking: the images and what E_phi
                            reads of them (the labels' region hidden)

The image operations themselves are in manipulate.py.
"""

from __future__ import annotations

import functools

import numpy as np

from cvqvae_jax import manipulate
from cvqvae_jax import paths
from cvqvae_jax import previews
from cvqvae_jax.data import pipeline

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LAMBDAS = (0.0, 0.5, 1.0, 1.5, 2.0)


def green_overlay(images: np.ndarray, difference: np.ndarray,
                  quantile: float = 0.99) -> np.ndarray:
  """Images (B, S, S, C) in [-1, 1] darkened to grey, with green where the
  per-pixel `difference` (B, S, S) is large (scaled by its `quantile` over
  the batch). Returns RGB in [-1, 1]."""
  grey = np.asarray(images, np.float32).mean(-1, keepdims=True)
  base = np.repeat(0.5 * grey, 3, axis=-1)
  d = np.asarray(difference, np.float32)
  strength = np.clip(d / max(np.quantile(d, quantile), 1e-6), 0, 1)[..., None]
  green = np.array([-1.0, 1.0, -1.0], np.float32)
  return base * (1 - strength) + green * strength


def _save(grid, directory: str, name: str) -> str:
  return previews.save_png(grid, paths.join(directory, name))


def write_figures(workdir: str, model, params, config,
                  pool: int = 400) -> dict[str, str]:
  """Writes every figure that the model and labels allow; returns
  {figure name: path}."""
  directory = paths.join(workdir, 'figures')
  batch = next(iter(pipeline.create_eval_dataset(config, 'test',
                                                 batch_size=pool)))
  x, labels = batch['image'], batch['label']
  n = config.eval.figure_examples
  scale = max(1, 96 // x.shape[1])
  grid = functools.partial(previews.image_grid, scale=scale, label_width=150)
  codec = manipulate.Codec(model)
  kinds = model.feature_kinds
  out = {}
  for l, name in enumerate(config.data.labels):
    i0 = np.flatnonzero(labels[:, l] == 0)
    i1 = np.flatnonzero(labels[:, l] == 1)
    k = min(n, len(i0), len(i1))
    if not k:
      continue
    a0, a1 = i0[:k], i1[:k]
    # Figs. 2-4: swaps.
    rows = previews.swap_rows(codec, params, batch, l, name, a0, a1,
                              config.eval.batch_size)
    out[f'swaps_{name}'] = _save(grid(
        rows, title=f'Swap of {name!r}: fake+ = x0 with the {name} of x1, '
        f'fake- = x1 with the {name}=0 look of x0'), directory,
        f'swaps_{name}.png')
    # Fig. 5: difference maps (only a presence label has a "without").
    if kinds[l] == 'presence':
      recon, without, diff = codec.difference(params, x[a1], l,
                                              labels=labels[a1])
      out[f'difference_{name}'] = _save(grid(
          [(f'x: {name}=1', x[a1]), ('reconstruction', recon),
           (f'as {name}=0', without),
           ('difference (green)', green_overlay(x[a1], diff))],
          title=f'Where {name!r} shows: reconstruction vs. its {name}=0 '
          'version'), directory, f'difference_{name}.png')
    # Fig. 6: interpolation in c between two images with the same y.
    for value in ((0, 1) if kinds[l] == 'both' else (1,)):
      idx = i1 if value else i0
      m = min(n, len(idx) // 2)
      if not m:
        continue
      p1, p2 = idx[:m], idx[m:2 * m]
      frames = codec.interpolate(params, x[p1], x[p2], l, np.array(ALPHAS),
                                 labels1=labels[p1], labels2=labels[p2])
      columns = np.concatenate([x[p1][None], frames, x[p2][None]])
      rows = [(f'pair {j + 1}', columns[:, j]) for j in range(m)]
      key = f'interpolation_{name}_y{value}'
      out[key] = _save(grid(
          rows, column_titles=['x1'] + [f'a={a:g}' for a in ALPHAS] + ['x2'],
          title=f'{name}={value}: D(z1, y1, c1 + a (c2 - c1))'), directory,
                       f'{key}.png')
    # Fig. 7: scaling c (y = 1).
    frames = codec.scale(params, x[a1], l, np.array(LAMBDAS),
                         labels=labels[a1])
    columns = np.concatenate([x[a1][None], frames])
    out[f'scaling_{name}'] = _save(grid(
        [(f'example {j + 1}', columns[:, j]) for j in range(k)],
        column_titles=['x'] + [f'lambda={s:g}' for s in LAMBDAS],
        title=f'{name}=1: D(z, y, lambda * c)'), directory, f'scaling_{name}.png')
  if 'encoder_region' in params:
    out['encoder_region'] = _save(grid(
        encoder_region_rows(model, params, x[:n]),
        title='model.encoder_masking: what E_phi reads (C_phi reads the '
        'image)'), directory, 'encoder_region.png')
  if labels.shape[1] >= 2:
    out.update(_multi_swap_figure(codec, params, x, labels, config, directory,
                                  grid, n))
  return out


def encoder_region_rows(model, params, x: np.ndarray) -> list:
  """Rows of the encoder_region figure: the images x (B, S, S, C) and x as
  E_phi reads them with model.encoder_masking (the model's own
  encoder_input)."""
  read = model.apply({'params': params}, x, method='encoder_input')
  return [('x', x), ('what E_phi reads', np.asarray(read))]


def _multi_swap_figure(codec, params, x, labels, config, directory, grid, n):
  """Fig. 8: the first two labels of x_{1,1} moved onto x_{0,0}."""
  names = config.data.labels[:2]
  i00 = np.flatnonzero((labels[:, 0] == 0) & (labels[:, 1] == 0))
  i11 = np.flatnonzero((labels[:, 0] == 1) & (labels[:, 1] == 1))
  k = min(n, len(i00), len(i11))
  if not k:
    return {}
  b, d = i00[:k], i11[:k]
  fake = codec.swap(params, x[b], x[d], labels[b], labels[d], label=(0, 1))
  rows = [(f'x: {names[0]}=0,{names[1]}=0', x[b]),
          ('fake (both moved)', fake),
          (f'x: {names[0]}=1,{names[1]}=1', x[d])]
  title = (f'Both {names[0]!r} and {names[1]!r} (y and c) of the bottom row '
           'moved onto the top row')
  return {'multi_swap': _save(grid(rows, title=title), directory,
                              'multi_swap.png')}
