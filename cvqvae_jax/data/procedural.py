"""Procedural cartoon-face benchmark with known factors (a CelebA stand-in).

Every example is a cartoon face rendered analytically with numpy from a flat
dict of *factors*, all sampled deterministically from ``(seed, split, index)``:

* nuisance factors (what CVQVAE's continuous latent z should hold):
  background colour, face position and size, skin tone, hair colour and
  length, eye colour;
* label ``glasses`` (kind ``presence``): y in {0, 1} plus frame colour, lens
  shape (superellipse exponent: 2 = round ... 8 = square), lens size and frame
  thickness, which only show when y = 1;
* label ``smile`` (kind ``both``): y = 1 shows a smile with the given curvature
  and openness (open mouths show a dark interior and teeth); y = 0 shows a
  closed, straight mouth with the given width and tilt;
* label ``big_head`` (kind ``presence``, opt-in): a global change of shape,
  like an enlarged heart. y = 1 scales the whole head (face, hair, eyes,
  mouth, glasses) by ``head_scale`` and its width by ``head_width``, moving
  it inwards where it would leave the image; both only show when y = 1.

Labels are independent Bernoulli(0.5) and every factor is sampled for every
example. Opt-in labels (``OPT_IN_LABELS``) are drawn only when asked for
(``sample_factors(..., active_labels=...)``; ``ProceduralSource`` asks for
its ``labels``), otherwise their y is 0 and the image is the one without
them: adding a label leaves every existing dataset bit-identical. The ideal result of swapping a label (its y and its features) from
a donor onto a base is well defined and can be rendered: ``render_ideal_swap``.

Conventions: colours are RGB in [0, 1]; positions and lengths are in
normalised image coordinates, where the image spans [-1, 1] on both axes and
y points *down*; glasses and mouth sizes are relative to the face half-width.
Images are float32 ``(S, S, 3)`` in [-1, 1], channels last. Importing this
module renders nothing.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

LABEL_KINDS: dict[str, str] = {'glasses': 'presence', 'smile': 'both',
                               'big_head': 'presence'}
# Labels whose y is drawn only when a config uses them (else y = 0).
OPT_IN_LABELS: tuple[str, ...] = ('big_head',)

NUISANCE_FACTORS: tuple[str, ...] = (
    'bg_color', 'face_x', 'face_y', 'face_size', 'skin_tone', 'hair_color',
    'hair_length', 'eye_color')
LABEL_FACTORS: dict[str, tuple[str, ...]] = {
    'glasses': ('glasses_color', 'glasses_shape', 'glasses_size',
                'glasses_thickness'),
    'smile': ('smile_curvature', 'smile_openness', 'neutral_width',
              'neutral_tilt'),
    'big_head': ('head_scale', 'head_width'),
}
# Label factors that show only for one value of their label's y: a factor
# (e.g. glasses_color) is invisible, and so unpredictable from any image,
# on the other examples.
FACTOR_SHOWN_WHEN: dict[str, tuple[str, int]] = {
    **{k: ('glasses', 1) for k in LABEL_FACTORS['glasses']},
    'smile_curvature': ('smile', 1), 'smile_openness': ('smile', 1),
    'neutral_width': ('smile', 0), 'neutral_tilt': ('smile', 0),
    **{k: ('big_head', 1) for k in LABEL_FACTORS['big_head']},
}
SPLITS: dict[str, int] = {'train': 0, 'test': 1}

# ---- factor ranges (uniform unless noted) --------------------------------
BG_COLOR_RANGE = (0.15, 0.95)         # per channel
FACE_X_RANGE = (-0.10, 0.10)          # face centre, normalised coords
FACE_Y_RANGE = (0.00, 0.10)           # lower than centre: room for the hair cap
FACE_SIZE_RANGE = (0.48, 0.60)        # face half-width rx; half-height = FACE_ASPECT*rx
SKIN_TONE_RANGE = (0.0, 1.0)          # 0 = SKIN_LIGHT ... 1 = SKIN_DARK
HAIR_COLOR_RANGE = (0.0, 0.85)        # per channel
HAIR_LENGTH_RANGE = (0.0, 1.0)        # 0 = short cap ... 1 = falls below the chin
EYE_COLOR_RANGE = (0.0, 0.75)         # per channel (iris)
GLASSES_SAT_RANGE = (0.6, 1.0)        # frame colour: any hue, saturated ...
GLASSES_VAL_RANGE = (0.05, 0.6)       # ... and dark, so it contrasts with skin
GLASSES_SHAPE_RANGE = (2.0, 8.0)      # superellipse exponent, log-uniform
GLASSES_SIZE_RANGE = (0.25, 0.32)     # lens half-width / rx
GLASSES_THICKNESS_RANGE = (0.13, 0.21)  # frame thickness / rx (>= 1 px at 32 px)
SMILE_CURVATURE_RANGE = (0.4, 0.9)    # sag of the smile / mouth half-width
SMILE_OPENNESS_RANGE = (0.0, 1.0)     # 0 = closed curve ... 1 = wide open
NEUTRAL_WIDTH_RANGE = (0.2, 0.42)     # closed-mouth half-width / rx
NEUTRAL_TILT_RANGE = (-0.25, 0.25)    # closed-mouth angle, radians
HEAD_SCALE_RANGE = (1.12, 1.22)       # big head: rx and ry times this ...
HEAD_WIDTH_RANGE = (0.9, 1.05)        # ... and rx (only) times this

# ---- fixed geometry and colours (not factors) -----------------------------
FACE_ASPECT = 1.18        # face half-height / half-width
SKIN_LIGHT = (1.0, 0.86, 0.74)
SKIN_DARK = (0.45, 0.28, 0.18)
EYE_DX, EYE_DY = 0.44, -0.15   # eye offset: x in rx, y in ry (negative = up)
MOUTH_DY = 0.5                 # mouth centre below face centre, in ry
LENS_ASPECT = 0.82             # lens half-height / half-width
SMILE_WIDTH = 0.42             # smile half-width / rx
SMILE_OPEN_MAX = 0.5           # max extra lower-lip drop / smile half-width
LIP_WIDTH = 0.12               # mouth stroke thickness / rx (~1 px at 32 px)
LIP_COLOR = (0.38, 0.03, 0.08)
MOUTH_INSIDE = (0.18, 0.02, 0.05)
TEETH_COLOR = (0.97, 0.97, 0.93)
LENS_TINT = 0.15               # alpha of the frame colour inside the lenses
_SALT = 0x5EED_FACE            # keeps our seeds apart from other SeedSequences

# Sampling layout in draw order (changing it changes the dataset): name ->
# one (lo, hi) range per uniform draw. All factors are affine maps of uniforms
# except labels (u < 0.5), glasses_color (drawn as HSV) and glasses_shape (drawn
# in log space, so that round and square lenses are about equally common).
_LAYOUT: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    ('bg_color', (BG_COLOR_RANGE,) * 3),
    ('face_x', (FACE_X_RANGE,)), ('face_y', (FACE_Y_RANGE,)),
    ('face_size', (FACE_SIZE_RANGE,)), ('skin_tone', (SKIN_TONE_RANGE,)),
    ('hair_color', (HAIR_COLOR_RANGE,) * 3),
    ('hair_length', (HAIR_LENGTH_RANGE,)), ('eye_color', (EYE_COLOR_RANGE,) * 3),
    ('glasses', ((0.0, 1.0),)),
    ('glasses_color', ((0.0, 1.0), GLASSES_SAT_RANGE, GLASSES_VAL_RANGE)),
    ('glasses_shape', (tuple(math.log(p) for p in GLASSES_SHAPE_RANGE),)),
    ('glasses_size', (GLASSES_SIZE_RANGE,)),
    ('glasses_thickness', (GLASSES_THICKNESS_RANGE,)), ('smile', ((0.0, 1.0),)),
    ('smile_curvature', (SMILE_CURVATURE_RANGE,)),
    ('smile_openness', (SMILE_OPENNESS_RANGE,)),
    ('neutral_width', (NEUTRAL_WIDTH_RANGE,)), ('neutral_tilt', (NEUTRAL_TILT_RANGE,)),
    # Appended labels go last: a Generator's first n doubles are the same
    # whether n or n + k are drawn, so earlier factors stay bit-identical.
    ('big_head', ((0.0, 1.0),)), ('head_scale', (HEAD_SCALE_RANGE,)),
    ('head_width', (HEAD_WIDTH_RANGE,)))
_LO = np.array([r[0] for _, rs in _LAYOUT for r in rs])
_HI = np.array([r[1] for _, rs in _LAYOUT for r in rs])
_OFFSETS = np.cumsum([0] + [len(rs) for _, rs in _LAYOUT]).tolist()
_NAMES = tuple(name for name, _ in _LAYOUT)

Factors = dict[str, np.ndarray]


def sample_factors(seed: int, index: int, split: str = 'train',
                   active_labels: Iterable[str] = ()) -> Factors:
  """Samples all factors of example ``index`` of ``split`` for ``seed``.

  Deterministic and independent per (seed, split, index); uses no global state.
  Returns a flat dict name -> float32 array: shape () for scalars (labels are
  0.0/1.0 under their names, e.g. 'glasses'), shape (3,) for colours.
  Labels of OPT_IN_LABELS not in ``active_labels`` get y = 0 (their feature
  factors are still sampled, and have no effect).
  """
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; known: {sorted(SPLITS)}')
  if seed < 0 or index < 0:
    raise ValueError(f'seed and index must be >= 0, got {seed}, {index}')
  rng = np.random.default_rng(
      np.random.SeedSequence([_SALT, int(seed), SPLITS[split], int(index)]))
  # One vectorised draw: a call per factor would cost more than rendering.
  v = _LO + (_HI - _LO) * rng.random(_LO.size)
  at = dict(zip(_NAMES, _OFFSETS))
  for label in LABEL_KINDS:
    v[at[label]] = v[at[label]] < 0.5                    # Bernoulli(0.5)
  active = (active_labels,) if isinstance(active_labels, str) else tuple(
      active_labels)
  for label in OPT_IN_LABELS:
    if label not in active:
      v[at[label]] = 0.0
  i = at['glasses_color']
  v[i:i + 3] = colorsys.hsv_to_rgb(*v[i:i + 3])
  v[at['glasses_shape']] = math.exp(v[at['glasses_shape']])
  v = v.astype(np.float32)
  return {name: v[a:b].reshape(() if b - a == 1 else (b - a,)).copy()
          for name, a, b in zip(_NAMES, _OFFSETS[:-1], _OFFSETS[1:])}


def swap_factors(base: Mapping[str, np.ndarray], donor: Mapping[str, np.ndarray],
                 label: str) -> Factors:
  """Copy of ``base`` with ``label``'s y and feature factors taken from ``donor``."""
  _check_label(label)
  out = {k: np.array(v) for k, v in base.items()}
  for k in (label,) + LABEL_FACTORS[label]:
    out[k] = np.array(donor[k])
  return out


def render_ideal_swap(base: Mapping[str, np.ndarray],
                      donor: Mapping[str, np.ndarray], label: str,
                      image_size: int) -> np.ndarray:
  """Renders the ideal swap of ``label`` from ``donor`` onto ``base``: (S, S, 3)."""
  return render(swap_factors(base, donor, label), image_size)


def stack_factors(factors: Sequence[Mapping[str, np.ndarray]]) -> Factors:
  """List of B factor dicts -> dict name -> array (B, *shape)."""
  if not factors or any(set(f) != set(factors[0]) for f in factors):
    raise ValueError('stack_factors needs >= 1 factor dicts, all with the same keys')
  return {k: np.stack([np.asarray(f[k], np.float32) for f in factors])
          for k in factors[0]}


def unstack_factors(batched: Mapping[str, np.ndarray]) -> list[Factors]:
  """Inverse of ``stack_factors``: dict name -> (B, *shape) to B factor dicts."""
  sizes = {np.shape(v)[0] for v in batched.values()}
  if len(sizes) != 1:
    raise ValueError(f'inconsistent batch sizes {sorted(sizes)}')
  return [{k: np.asarray(v[i], np.float32) for k, v in batched.items()}
          for i in range(sizes.pop())]


# ---- rendering --------------------------------------------------------------


def _check_image_size(image_size: int) -> None:
  s = int(image_size)
  if s != image_size or s < 16 or s > 256 or s & (s - 1):
    raise ValueError(
        f'image_size must be a power of two in [16, 256], got {image_size!r}')


def _check_label(label: str) -> None:
  if label not in LABEL_KINDS:
    raise ValueError(f'unknown label {label!r}; known labels: {list(LABEL_KINDS)}')


@functools.lru_cache(maxsize=None)
def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates in [-1, 1]: x of shape (1, S), y of shape (S, 1)."""
  c = ((np.arange(image_size, dtype=np.float32) + 0.5) * (2.0 / image_size)
       - 1.0).astype(np.float32)
  c.setflags(write=False)
  return c[None, :], c[:, None]


def _cov(d: np.ndarray, px: float) -> np.ndarray:
  """Anti-aliased coverage from a signed distance (negative inside): ~1 px ramp."""
  c = 0.5 - d * (1.0 / px)
  # In-place max/min: np.clip's Python wrapper costs more than the maths at 32 px.
  np.maximum(c, 0.0, out=c)
  return np.minimum(c, 1.0, out=c)


def _ellipse_sd(x, y, a: float, b: float) -> np.ndarray:
  """Approximate signed distance to the ellipse (x/a)^2 + (y/b)^2 = 1.

  First-order (q - 1) / |grad q|: exact on the boundary, which is all the
  1-pixel anti-aliasing ramp needs.
  """
  q = (x / a) ** 2 + (y / b) ** 2
  g = 2.0 * np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2) + 1e-6
  return (q - 1.0) / g


def _superellipse_sd(x, y, a: float, b: float, p: float) -> np.ndarray:
  """Approximate signed distance to |x/a|^p + |y/b|^p = 1 (p=2 round, 8 square).

  With r = (|u|^p + |v|^p)^(1/p), returns (r - 1) / |grad r| so that the frame
  ring |d| < t/2 has a uniform thickness also at the corners of square lenses.
  """
  u = np.abs(x) * (1.0 / a) + 1e-6
  v = np.abs(y) * (1.0 / b) + 1e-6
  up, vp = np.exp(p * np.log(u)), np.exp(p * np.log(v))   # u^p, v^p
  s = up + vp
  r = np.exp(np.log(s) * (1.0 / p))
  # grad r = r^(1-p) * (u^(p-1)/a, v^(p-1)/b), with r^(1-p) = r/s, u^(p-1) = u^p/u.
  g = (r / s) * np.sqrt((up / (u * a)) ** 2 + (vp / (v * b)) ** 2) + 1e-6
  return (r - 1.0) / g


def _segment_dist(x, y, half_len: float, angle: float) -> np.ndarray:
  """Distance to a centred segment of half-length ``half_len`` at ``angle``."""
  c, s = np.cos(angle), np.sin(angle)
  t = np.clip(x * c + y * s, -half_len, half_len)
  return np.sqrt((x - t * c) ** 2 + (y - t * s) ** 2)


def _paint(img: np.ndarray, alpha: np.ndarray, color, rows=slice(None),
           cols=slice(None)) -> None:
  """Alpha-composites ``color`` (3,) over channels-first ``img[:, rows, cols]``.

  Channels-first while drawing: broadcasting a length-3 trailing axis is ~2x
  slower in numpy.
  """
  view = img[:, rows, cols]
  view += alpha * (np.asarray(color, np.float32).reshape(3, 1, 1) - view)


def _box(x_grid, y_grid, x0, x1, y0, y1):
  """Index slices and sub-grids covering [x0, x1] x [y0, y1] (plus 1 px margin).

  Small features (eyes, mouth, glasses) are only evaluated inside their box,
  which keeps the renderer fast at 128 px.
  """
  n = x_grid.shape[1]
  span = lambda v0, v1: slice(max(int(math.floor((v0 + 1.0) * n / 2.0)) - 1, 0),
                              min(int(math.floor((v1 + 1.0) * n / 2.0)) + 2, n))
  cols, rows = span(x0, x1), span(y0, y1)
  return rows, cols, x_grid[:, cols], y_grid[rows, :]


# Normalised margin the moved big head keeps from the top and side borders
# (1.6 px at 32 px: clear of the anti-aliasing ramp).
_BIG_HEAD_MARGIN = 0.1


def big_head_geometry(f: Mapping[str, np.ndarray]
                      ) -> tuple[float, float, float, float]:
  """(face_x, face_y, rx, ry) as rendered with big_head = 1.

  rx = face_size * head_scale * head_width, ry = FACE_ASPECT * face_size *
  head_scale; the centre moves inwards just enough to keep the hair cap
  (1.16 rx wide, 1.19 ry above the centre) clear of the top and side
  borders and the chin inside the image (the neck runs off the bottom).
  """
  size, scale = float(f['face_size']), float(f['head_scale'])
  rx = size * scale * float(f['head_width'])
  ry = FACE_ASPECT * size * scale
  m = _BIG_HEAD_MARGIN
  x_room = max(1.0 - 1.16 * rx - m, 0.0)
  fx = min(max(float(f['face_x']), -x_room), x_room)
  fy = min(max(float(f['face_y']), -1.0 + 1.19 * ry + m), 1.0 - ry)
  return fx, fy, rx, ry


def render(factors: Mapping[str, np.ndarray], image_size: int) -> np.ndarray:
  """Renders one face from its factors: float32 (S, S, 3) in [-1, 1].

  Layers back to front: background, hair (behind the face), neck, face, fringe,
  eyes, mouth (smile or neutral), glasses. Features of a label whose y is 0
  (glasses, big_head) or that does not match y (smile) are never read, so
  changing them leaves the image bit-identical. Factors without a
  'big_head' key render as big_head = 0.
  """
  _check_image_size(image_size)
  S = int(image_size)
  px = 2.0 / S
  gx, gy = _grid(S)
  f = factors
  fx, fy, rx = float(f['face_x']), float(f['face_y']), float(f['face_size'])
  ry = FACE_ASPECT * rx
  if float(f.get('big_head', 0.0)) > 0.5:
    fx, fy, rx, ry = big_head_geometry(f)
  t = float(f['skin_tone'])
  skin = (1.0 - t) * np.asarray(SKIN_LIGHT) + t * np.asarray(SKIN_DARK)

  img = np.empty((3, S, S), np.float32)
  img[...] = np.asarray(f['bg_color'], np.float32).reshape(3, 1, 1)
  x, y = gx - fx, gy - fy            # face-centred coordinates, (1,S) and (S,1)

  # Hair cap behind the face: an ellipse on top, straight down the sides below
  # its centre, cut off at a height set by hair_length.
  hcy = -0.05 * ry
  hx, hy = 1.16 * rx, 1.14 * ry
  d_hair = np.where(y > hcy, np.abs(x) - hx, _ellipse_sd(x, y - hcy, hx, hy))
  hair_bottom = ry * (-0.25 + 1.45 * float(f['hair_length']))
  hair = _cov(d_hair, px) * _cov(y - hair_bottom, px)
  _paint(img, hair, f['hair_color'])

  # Neck, then the face ellipse.
  rows, cols, nx, ny = _box(gx, gy, fx - 0.4 * rx, fx + 0.4 * rx, fy, 1.0)
  _paint(img, _cov(np.abs(nx - fx) - 0.32 * rx, px) * _cov(fy + 0.5 * ry - ny, px),
         0.85 * skin, rows, cols)
  d_face = _ellipse_sd(x, y, rx, ry)
  _paint(img, _cov(d_face, px), skin)

  # Fringe: the part of the hair cap above a curved hairline comes in front of
  # the face (repainting the whole cap there avoids a seam at the face edge).
  hairline = -0.52 * ry + 0.22 * ry * (x / rx) ** 2
  _paint(img, hair * _cov(y - hairline, px), f['hair_color'])

  # Eyes (mirror trick: |x| draws both at once): sclera, iris, pupil.
  ex, ey = EYE_DX * rx, EYE_DY * ry
  rows, cols, bx, by = _box(gx, gy, fx - rx, fx + rx, fy + ey - 0.2 * rx,
                            fy + ey + 0.2 * rx)
  ux, uy = np.abs(bx - fx) - ex, by - fy - ey
  _paint(img, _cov(_ellipse_sd(ux, uy, 0.17 * rx, 0.12 * rx), px),
         (1.0, 1.0, 1.0), rows, cols)
  r_eye = np.sqrt(ux ** 2 + uy ** 2)
  _paint(img, _cov(r_eye - 0.095 * rx, px), f['eye_color'], rows, cols)
  _paint(img, _cov(r_eye - 0.04 * rx, px), (0.02, 0.02, 0.02), rows, cols)

  _draw_mouth(img, f, gx, gy, fx, fy + MOUTH_DY * ry, rx, px)
  if f['glasses'] > 0.5:
    _draw_glasses(img, f, gx, gy, fx, fy + ey, rx, ry, px, fy)
  out = np.empty((S, S, 3), np.float32)     # back to channels-last, in [-1, 1]
  np.multiply(img.transpose(1, 2, 0), 2.0, out=out)
  out -= 1.0
  return out


def _draw_mouth(img, f, gx, gy, mx, my, rx, px) -> None:
  """Smile (y=1: curvature, openness) or neutral line (y=0: width, tilt)."""
  lw = LIP_WIDTH * rx
  box = lambda hw, top, bottom: _box(gx, gy, mx - hw, mx + hw, my + top, my + bottom)
  if f['smile'] < 0.5:
    hw = float(f['neutral_width']) * rx
    rows, cols, bx, by = box(hw + lw, -hw - lw, hw + lw)
    d = _segment_dist(bx - mx, by - my, hw, float(f['neutral_tilt']))
    _paint(img, _cov(d - 0.5 * lw, px), LIP_COLOR, rows, cols)
    return
  w = SMILE_WIDTH * rx
  sag = float(f['smile_curvature']) * w
  o = float(f['smile_openness'])
  drop = o * SMILE_OPEN_MAX * w                   # extra depth of the lower lip
  rows, cols, bx, by = box(w + lw, -0.5 * sag - lw, 0.5 * sag + drop + lw)
  u, v = bx - mx, by - my
  bump = 1.0 - np.minimum((u / w) ** 2, 1.0)     # 1 at the centre, 0 at corners
  # Closed (o=0): both lips on one parabola with the corners up. Opening makes
  # a "D": the upper lip flattens towards the corners' line, the lower drops.
  k_top, k_low = (1.0 - o) * sag, sag + drop      # centre sag of each lip
  y_top, y_low = k_top * bump - 0.5 * sag, k_low * bump - 0.5 * sag
  inside = _cov(y_top - v, px) * _cov(v - y_low, px) * _cov(np.abs(u) - w, px)
  _paint(img, inside, MOUTH_INSIDE, rows, cols)
  teeth = _cov(v - (y_top + 0.35 * (y_low - y_top)), px)  # upper part of inside
  _paint(img, inside * teeth, TEETH_COLOR, rows, cols)
  # Lip strokes: vertical distance / sqrt(1 + slope^2) along each parabola,
  # distance to the shared corner point beyond |u| > w.
  corner = np.sqrt((np.abs(u) - w) ** 2 + (v + 0.5 * sag) ** 2)
  slope = 2.0 * u / (w * w)                       # = -d(bump)/du
  d_top = np.abs(v - y_top) / np.sqrt(1.0 + (k_top * slope) ** 2)
  d_low = np.abs(v - y_low) / np.sqrt(1.0 + (k_low * slope) ** 2)
  d = np.where(np.abs(u) <= w, np.minimum(d_low, d_top), corner)
  # Both lips lie below the corners' line: a bound that the vertical-distance
  # approximation misses next to the steep corners.
  d = np.maximum(d, -0.5 * sag - v)
  _paint(img, _cov(d - 0.5 * lw, px), LIP_COLOR, rows, cols)


def _draw_glasses(img, f, gx, gy, fx, ey, rx, ry, px, fy) -> None:
  """Two superellipse lenses over the eyes, bridge and temple arms."""
  a = float(f['glasses_size']) * rx
  b = LENS_ASPECT * a
  th = float(f['glasses_thickness']) * rx
  ex = EYE_DX * rx
  rows, cols, bx, by = _box(gx, gy, fx - rx, fx + rx, ey - b - th, ey + b + th)
  u, v = np.abs(bx - fx), by - ey          # mirrored: one lens draws both
  d = _superellipse_sd(u - ex, v, a, b, float(f['glasses_shape']))
  color = f['glasses_color']
  _paint(img, LENS_TINT * _cov(d, px), color, rows, cols)
  ring = _cov(np.abs(d) - 0.5 * th, px)
  bar_y = -0.3 * b                          # bridge and arms sit a bit high
  bar = _cov(np.abs(v - bar_y) - 0.5 * th, px)
  bridge = bar * _cov(u - (ex - 0.9 * a), px)
  # Arms run from the outer lens edge to the face outline at that height.
  face_edge = rx * np.sqrt(max(0.0, 1.0 - ((ey + bar_y - fy) / ry) ** 2))
  arms = bar * _cov((ex + 0.9 * a) - u, px) * _cov(u - face_edge, px)
  _paint(img, np.maximum(ring, np.maximum(bridge, arms)), color, rows, cols)


# ---- grain data source ---------------------------------------------------


class ProceduralSource:
  """grain ``RandomAccessDataSource`` of procedural faces.

  Item ``i`` is ``{'image': float32 (S, S, 3) in [-1, 1], 'label': int32
  (len(labels),), 'index': int32 (), 'factors': dict name -> float32 array}``.
  ``labels`` selects (and orders) the entries of 'label' and activates the
  opt-in labels among them (OPT_IN_LABELS, drawn only when listed: y = 0
  otherwise); glasses and smile are always drawn and rendered. Splits draw
  disjoint random streams.
  """

  def __init__(self, *, num_examples: int, image_size: int, seed: int = 0,
               split: str = 'train',
               labels: Iterable[str] = ('glasses', 'smile')):
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    for label in labels:
      _check_label(label)
    if not labels or len(set(labels)) != len(labels):
      raise ValueError(f'labels must be non-empty and distinct, got {labels}; '
                       f'known labels: {list(LABEL_KINDS)}')
    _check_image_size(image_size)
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; known: {sorted(SPLITS)}')
    if int(num_examples) < 1 or int(seed) < 0:
      raise ValueError(f'need num_examples >= 1 and seed >= 0, got '
                       f'{num_examples}, {seed}')
    self.num_examples, self.image_size = int(num_examples), int(image_size)
    self.seed, self.split, self.labels = int(seed), split, labels

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index) -> dict[str, Any]:
    i = int(index)
    if i < 0:
      i += self.num_examples
    if not 0 <= i < self.num_examples:
      raise IndexError(f'index {index} out of range for {self!r}')
    factors = sample_factors(self.seed, i, self.split, self.labels)
    return {
        'image': render(factors, self.image_size),
        'label': np.array([factors[l] for l in self.labels], np.int32),
        'index': np.asarray(i, np.int32),
        'factors': factors,
    }

  def __repr__(self) -> str:
    return (f'ProceduralSource(num_examples={self.num_examples}, '
            f'image_size={self.image_size}, seed={self.seed}, '
            f'split={self.split!r}, labels={self.labels})')
