"""Image decoding and preprocessing for the real-data sources.

Runs in grain worker processes: PIL only (no TensorFlow, no JAX). Every image
comes out float32 (S, S, C) in [-1, 1], C = 1 (grey) or 3 (colour).
"""

from __future__ import annotations

import io
from typing import Union

from etils import epath
import numpy as np
from PIL import Image

from cvqvae_jax import paths
from cvqvae_jax.data import errors

CROPS = ('center', 'none')
# PIL modes that hold one channel; 16-bit and float ones are rescaled first.
_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'F')

ImageInput = Union[str, bytes]


def is_grey(mode: str) -> bool:
  return mode in _GREY_MODES


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    # 16-bit / float grey (medical PNGs): stretch to 8 bits by its own range.
    a = np.asarray(image, np.float32)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) * (255.0 / max(hi - lo, 1e-6))
    image = Image.fromarray(np.round(a).astype(np.uint8), 'L')
  mode = 'L' if channels == 1 else 'RGB'
  return image if image.mode == mode else image.convert(mode)


def preprocess(image: Image.Image, size: int, channels: int,
               crop: str = 'center') -> np.ndarray:
  """PIL image -> float32 (size, size, channels) in [-1, 1].

  crop: 'center' takes the largest centred square, then resizes (CelebA
  178x218 -> 178x178 -> size); 'none' resizes the whole image to a square.
  """
  if crop not in CROPS:
    raise ValueError(f'data.crop must be one of {CROPS}, got {crop!r}.')
  if image.format == 'JPEG':
    # DCT-domain downscaling by a power of two: both sides stay >= size.
    image.draft('L' if channels == 1 else 'RGB', (size, size))
  image = _to_mode(image, channels)
  if crop == 'center':
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s))
  if image.size != (size, size):
    image = image.resize((size, size), Image.BILINEAR)
  x = np.asarray(image, np.float32).reshape(size, size, channels)
  return x * (2.0 / 255.0) - 1.0


def _unreadable(name: str, e: Exception) -> errors.UnreadableImageError:
  return errors.UnreadableImageError(
      f'Cannot read image {name}: {e}. Replace the file, or set '
      '--config.data.skip_unreadable=True to skip such images.')


def load(source: ImageInput, name: str, size: int, channels: int,
         crop: str) -> np.ndarray:
  """Decodes a path or encoded bytes and preprocesses it; a missing or
  unreadable file is an errors.UnreadableImageError that names it."""
  if crop not in CROPS:
    raise ValueError(f'data.crop must be one of {CROPS}, got {crop!r}.')
  try:
    if isinstance(source, str) and paths.is_remote(source):
      source = epath.Path(source).read_bytes()  # gs://, s3://, ...
    with Image.open(io.BytesIO(source) if isinstance(source, bytes)
                    else source) as image:
      return preprocess(image, size, channels, crop)
  except FileNotFoundError as e:
    raise errors.UnreadableImageError(f'Image not found: {name}') from e
  except (OSError, ValueError, SyntaxError) as e:
    raise _unreadable(name, e) from e


def channels_of(path: str) -> int:
  """1 for a grey image file, 3 otherwise (reads the header only)."""
  try:
    with Image.open(io.BytesIO(epath.Path(path).read_bytes())
                    if paths.is_remote(path) else path) as image:
      return 1 if is_grey(image.mode) else 3
  except (OSError, ValueError, SyntaxError) as e:
    raise _unreadable(path, e) from e
