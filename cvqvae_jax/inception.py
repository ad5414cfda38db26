"""The FID InceptionV3 in Flax: pytorch-fid's network (the TensorFlow
2015-12-05 Inception with its FID-specific pooling), its 2048-d pool
features, and the loading of its weights from a local .npz file.

The weights cannot be downloaded at run time here. Get pytorch-fid's
release file pt_inception-2015-12-05-6726825d.pth (docs/evaluation.md) and
convert it once (this step needs torch, nothing else does):

  python -m cvqvae_jax.inception --convert pt_inception-2015-12-05-6726825d.pth \
      fid_inception.npz

then pass --config.eval.fid_weights=fid_inception.npz. Module and parameter
names follow torchvision's Inception3, so the .npz keys are the .pth keys.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cvqvae_jax import metrics
from cvqvae_jax import xla_options

FID_INPUT_SIZE = 299


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
  """conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""
  features: int
  kernel_size: Any = 1
  strides: Any = 1
  padding: Any = 0

  @nn.compact
  def __call__(self, x):
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel_size), _pair(self.strides),
                padding=((ph, ph), (pw, pw)), use_bias=False, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _avg_pool_exclusive(x):
  # TensorFlow's average pool (the FID patch): padded zeros not counted.
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool(x, strides=2, padding='VALID'):
  return nn.max_pool(x, (3, 3), (strides, strides), padding)


class InceptionA(nn.Module):  # FIDInceptionA
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, 1, name='branch1x1')(x)
    b5 = BasicConv2d(48, 1, name='branch5x5_1')(x)
    b5 = BasicConv2d(64, 5, padding=2, name='branch5x5_2')(b5)
    b3 = BasicConv2d(64, 1, name='branch3x3dbl_1')(x)
    b3 = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_2')(b3)
    b3 = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_3')(b3)
    bp = BasicConv2d(self.pool_features, 1, name='branch_pool')(
        _avg_pool_exclusive(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, 3, strides=2, name='branch3x3')(x)
    bd = BasicConv2d(64, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = BasicConv2d(96, 3, strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class InceptionC(nn.Module):  # FIDInceptionC
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, 1, name='branch1x1')(x)
    b7 = BasicConv2d(c7, 1, name='branch7x7_1')(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv2d(c7, 1, name='branch7x7dbl_1')(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv2d(192, 1, name='branch_pool')(_avg_pool_exclusive(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, 1, name='branch3x3_1')(x)
    b3 = BasicConv2d(320, 3, strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv2d(192, 1, name='branch7x7x3_1')(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv2d(192, 3, strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class InceptionE(nn.Module):
  """FIDInceptionE_1 (pool='avg') and FIDInceptionE_2 (pool='max': the FID
  network's max pool where the paper has an average)."""
  pool: str = 'avg'

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, 1, name='branch1x1')(x)
    b3 = BasicConv2d(384, 1, name='branch3x3_1')(x)
    b3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)],
                         -1)
    bd = BasicConv2d(448, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv2d(384, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)],
                         -1)
    pooled = (_avg_pool_exclusive(x) if self.pool == 'avg'
              else _max_pool(x, 1, ((1, 1), (1, 1))))
    bp = BasicConv2d(192, 1, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
  """x (B, H, W, 3) in [-1, 1] -> pool3 features (B, 2048).

  resize_input: bilinear resize to 299 x 299 first (pytorch-fid's default,
  F.interpolate(align_corners=False) without antialiasing).
  """
  resize_input: bool = True

  @nn.compact
  def __call__(self, x):
    if self.resize_input:
      x = jax.image.resize(x, (x.shape[0], FID_INPUT_SIZE, FID_INPUT_SIZE,
                               x.shape[-1]), 'bilinear', antialias=False)
    x = BasicConv2d(32, 3, strides=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv2d(32, 3, name='Conv2d_2a_3x3')(x)
    x = BasicConv2d(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
    x = _max_pool(x)
    x = BasicConv2d(80, 1, name='Conv2d_3b_1x1')(x)
    x = BasicConv2d(192, 3, name='Conv2d_4a_3x3')(x)
    x = _max_pool(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                     ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE('avg', name='Mixed_7b')(x)
    x = InceptionE('max', name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
  """torchvision-named arrays ('Mixed_5b.branch1x1.conv.weight', ...) ->
  Flax {'params', 'batch_stats'}. Keys the network does not use (fc,
  AuxLogits, num_batches_tracked) are skipped."""
  params: dict = {}
  stats: dict = {}
  rename = {'conv.weight': ('params', 'conv', 'kernel'),
            'bn.weight': ('params', 'bn', 'scale'),
            'bn.bias': ('params', 'bn', 'bias'),
            'bn.running_mean': ('batch_stats', 'bn', 'mean'),
            'bn.running_var': ('batch_stats', 'bn', 'var')}
  for key, value in state_dict.items():
    parts = key.split('.')
    suffix = '.'.join(parts[-2:])
    if parts[0] in ('fc', 'AuxLogits') or suffix not in rename:
      continue
    collection, module, leaf = rename[suffix]
    value = np.asarray(value, np.float32)
    if leaf == 'kernel':
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    node = params if collection == 'params' else stats
    for p in parts[:-2]:
      node = node.setdefault(p, {})
    node.setdefault(module, {})[leaf] = value
  return {'params': params, 'batch_stats': stats}


def load_variables(path: str) -> dict:
  """Flax variables from a converted .npz (see convert_pth)."""
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except FileNotFoundError as e:
    raise FileNotFoundError(
        f'eval.fid_weights: no file {path!r}. Convert pytorch-fid\'s '
        'pt_inception-2015-12-05-6726825d.pth with `python -m '
        'cvqvae_jax.inception --convert IN.pth OUT.npz` '
        '(docs/evaluation.md), or leave eval.fid_weights empty.') from e
  variables = variables_from_state_dict(arrays)
  expected = jax.eval_shape(
      lambda: FIDInceptionV3().init(jax.random.key(0),
                                    jnp.zeros((1, 75, 75, 3))))
  got = jax.tree.map(np.shape, variables)
  want = jax.tree.map(lambda a: tuple(a.shape), expected)
  if got != want:
    raise ValueError(f'{path} does not hold the FID InceptionV3 weights '
                     '(parameter names or shapes differ).')
  return variables


def convert_pth(pth_path: str, npz_path: str) -> None:
  """pytorch-fid's .pth -> .npz (needs torch; run once)."""
  import torch  # pylint: disable=g-import-not-at-top
  state = torch.load(pth_path, map_location='cpu', weights_only=True)
  np.savez(npz_path, **{k: v.numpy() for k, v in state.items()})


def _features(module, variables, x):
  x = x if x.shape[-1] == 3 else jnp.repeat(x, 3, axis=-1)
  return module.apply(variables, x)


@functools.cache
def _jitted_features():
  """_features of the InceptionV3, jitted once per process (every
  FIDFeatures shares it: one compilation per batch shape)."""
  return xla_options.jit(functools.partial(_features, FIDInceptionV3()))


class FIDFeatures:
  """Pool3 features and their statistics for images in [-1, 1]."""

  def __init__(self, weights_path: str, batch_size: int = 50):
    self.variables = load_variables(weights_path)
    self.batch_size = batch_size
    self._apply = _jitted_features()

  def features(self, images) -> np.ndarray:
    """(N, S, S, C) -> (N, 2048), in fixed-size batches (one compile)."""
    return metrics.batched(lambda x: self._apply(self.variables, x),
                           (np.asarray(images, np.float32),), self.batch_size)

  def statistics(self, images) -> tuple[np.ndarray, np.ndarray]:
    return metrics.feature_statistics(self.features(images))


if __name__ == '__main__':
  if len(sys.argv) != 4 or sys.argv[1] != '--convert':
    sys.exit('usage: python -m cvqvae_jax.inception --convert IN.pth OUT.npz')
  convert_pth(sys.argv[2], sys.argv[3])
  load_variables(sys.argv[3])  # Checks names and shapes.
  print(f'Wrote {sys.argv[3]}')
