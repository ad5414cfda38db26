"""ResNets for the independent classifier of paper section 3.

The paper's classifier is a ResNet-50 (He et al. 2016). 'resnet18/34/50' are
the ImageNet networks (7x7 stride-2 stem and max-pool, four stages); at
32 px their stem leaves an 8x8 map, so small images are better served by
the CIFAR-style networks of the same paper (3x3 stem, three stages of basic
blocks, widths 16/32/64): 'cifar_resnet8' (1 block per stage) and
'cifar_resnet20' (3 blocks per stage).

ResNet(...)(x, train) -> (logits (B, num_classes), features (B, F)), the
features being the globally pooled activations before the dense layer.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class BasicBlock(nn.Module):
  """Two 3x3 convs; 1x1 projection shortcut when the shape changes."""
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9)
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
    y = norm(scale_init=nn.initializers.zeros)(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = norm()(nn.Conv(self.features, (1, 1), self.strides,
                         use_bias=False)(x))
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 x4 widening, as in ResNet-50."""
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9)
    y = nn.relu(norm()(nn.Conv(self.features, (1, 1), use_bias=False)(x)))
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False)(y)
    y = nn.relu(norm()(y))
    y = nn.Conv(4 * self.features, (1, 1), use_bias=False)(y)
    y = norm(scale_init=nn.initializers.zeros)(y)
    if x.shape[-1] != 4 * self.features or self.strides != 1:
      x = norm()(nn.Conv(4 * self.features, (1, 1), self.strides,
                         use_bias=False)(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  block: str = 'basic'           # 'basic' or 'bottleneck'
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = 'imagenet'         # 'imagenet' (7x7/2 + max-pool) or 'cifar'
  num_classes: int = 2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    block_cls = BasicBlock if self.block == 'basic' else BottleneckBlock
    if self.stem == 'imagenet':
      x = nn.Conv(self.widths[0], (7, 7), 2, padding=[(3, 3), (3, 3)],
                  use_bias=False, name='stem_conv')(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                               name='stem_norm')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    else:
      x = nn.Conv(self.widths[0], (3, 3), use_bias=False, name='stem_conv')(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                               name='stem_norm')(x))
    for i, (size, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(size):
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(width, strides)(x, train)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, name='head')(features)
    return logits, features


ARCHITECTURES = {
    'resnet18': dict(stage_sizes=(2, 2, 2, 2), block='basic'),
    'resnet34': dict(stage_sizes=(3, 4, 6, 3), block='basic'),
    'resnet50': dict(stage_sizes=(3, 4, 6, 3), block='bottleneck'),
    'cifar_resnet8': dict(stage_sizes=(1, 1, 1), block='basic',
                          widths=(16, 32, 64), stem='cifar'),
    'cifar_resnet20': dict(stage_sizes=(3, 3, 3), block='basic',
                           widths=(16, 32, 64), stem='cifar'),
}


def create_resnet(name: str, num_classes: int = 2) -> ResNet:
  if name not in ARCHITECTURES:
    raise ValueError(f'Unknown eval.classifier {name!r}; available: '
                     f'{sorted(ARCHITECTURES)}.')
  return ResNet(num_classes=num_classes, **ARCHITECTURES[name])
