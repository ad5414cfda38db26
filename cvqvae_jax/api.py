"""A trained model in one call, and images in and out of it.

  import cvqvae_jax
  m = cvqvae_jax.load('/tmp/cvqvae_default')      # model, params, config
  x = m.read_images('me.jpg')                    # (1, S, S, C) in [-1, 1]
  codes = m.encode(x)                            # y (predicted), c, z
  m.save_images(m.decode(m.set_label(codes, 'glasses', 1)), 'me_glasses.png')

`load` reads WORKDIR/config.json and the parameters of the workdir's latest
checkpoint (no optimizer state, no data); in a two-step run that is the final
model once stage two has saved, else stage one's, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any, Sequence

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
from PIL import Image

from cvqvae_jax import checkpointing
from cvqvae_jax import compile_cache
from cvqvae_jax import manipulate
from cvqvae_jax import previews
from cvqvae_jax import two_step
from cvqvae_jax.data import images as image_io
from cvqvae_jax.data import pipeline
from cvqvae_jax import models


def _tuples(value):
  """JSON lists back to the tuples the configs use."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """WORKDIR/config.json (written when training starts), locked like the
  config files."""
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(
        f'No config.json in {workdir}: expected the --workdir of a training '
        'run (train first, or pass --config).')
  try:
    values = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from e
  config = ml_collections.ConfigDict(_tuples(values))
  config.lock()
  return config


@dataclasses.dataclass
class Trained:
  """A trained model: the Flax module, its parameters, the config it was
  trained with, the checkpoint's step and the image shape (S, S, C)."""
  model: Any
  params: Any
  config: ml_collections.ConfigDict
  step: int
  image_shape: tuple[int, int, int]

  @property
  def labels(self) -> tuple[str, ...]:
    return tuple(self.config.data.labels)

  def label_index(self, label: int | str) -> int:
    if isinstance(label, int):
      return label
    if label not in self.labels:
      raise ValueError(f'Unknown label {label!r}; this model has '
                       f'{self.labels}.')
    return self.labels.index(label)

  def read_images(self, *paths) -> np.ndarray:
    """Image files -> (N, S, S, C) float32 in [-1, 1], cropped (data.crop)
    and resized as in training: read_images('a.jpg'), read_images('a.jpg',
    'b.jpg') or read_images(['a.jpg', 'b.jpg'])."""
    paths = [p for arg in paths
             for p in (arg if isinstance(arg, (list, tuple)) else (arg,))]
    if not paths:
      raise ValueError('read_images needs at least one image path.')
    size, _, channels = self.image_shape
    return np.stack([image_io.load(epath.Path(p).read_bytes(), str(p), size,
                                   channels, self.config.data.crop)
                     for p in paths])

  def encode(self, x, labels=None) -> manipulate.Codes:
    """y (the given labels (N, L), else the most likely), c and z."""
    return manipulate.Codec(self.model).encode(self.params, x, labels)

  def decode(self, codes: manipulate.Codes) -> jax.Array:
    return manipulate.Codec(self.model).decode(self.params, codes)

  def set_label(self, codes, label: int | str, value: int):
    """Codes with y of `label` set to `value` (0 or 1), c kept."""
    return manipulate.set_label(codes, self.label_index(label), value)

  def swap(self, x_base, x_donor, label: int | str) -> jax.Array:
    """x_base with the y and c of `label` taken from x_donor."""
    base, donor = self.encode(x_base), self.encode(x_donor)
    return self.decode(manipulate.swap_label(base, donor,
                                             self.label_index(label)))

  @staticmethod
  def save_images(x, path: str) -> str:
    """(N, S, S, C) in [-1, 1] -> one PNG, the images side by side."""
    tiles = previews.to_uint8(np.asarray(x))
    row = np.concatenate(list(tiles), axis=1)
    path = epath.Path(path)
    with path.open('wb') as f:
      Image.fromarray(row).save(f, format='PNG')
    return str(path)


@contextlib.contextmanager
def _quiet():
  """Only errors from absl logging (orbax's channel) inside the block."""
  before = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(before)


def load(workdir: str) -> Trained:
  """The model of `workdir`'s latest checkpoint, with the config it was
  trained with (config.json). Reads no data and no optimizer state."""
  compile_cache.enable()
  config = load_config(workdir)
  with _quiet():
    step, stage, described = two_step.latest_stage(workdir, config)
  if step is None:
    raise FileNotFoundError(
        f'No checkpoints in {checkpointing.checkpoint_dir(workdir)}: that run '
        'has not saved one yet (train first, or wait for its first '
        'checkpoint).')
  image_shape = tuple(described.get('image_shape') or
                      pipeline.image_shape(config.data))
  if stage == two_step.STAGE_ONE:
    one = two_step.stage_one_config(config)
    logging.warning('%s holds only stage one (%s) so far, at step %d: '
                    'loading that model.', workdir, two_step.variant(one),
                    step)
    config = one
  model = models.for_config(config, image_shape)
  x = jax.ShapeDtypeStruct((1, *image_shape), np.float32)
  labels = jax.ShapeDtypeStruct((1, len(config.data.labels)), np.int32)
  rngs = {'params': jax.random.key(0), 'sample': jax.random.key(1)}
  abstract = jax.eval_shape(
      lambda x, l: model.init(rngs, x, l, l > 0, train=True), x,
      labels)['params']
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
      abstract)
  with _quiet():  # orbax's notes on read-only managers and unread items.
    flat, source = checkpointing.restore_params(
        workdir, abstract, description=models.description(config, image_shape))
  return Trained(model, checkpointing.unflatten(flat), config,
                 int(source['step']), image_shape)


__all__: Sequence[str] = ('Trained', 'load', 'load_config')
