"""Device mesh and shardings (README.md, "Scale").

The step is `jax.jit` over a `jax.make_mesh` mesh: the batch is split over all
mesh axes (data parallel) and the train state is replicated, so scaling from
one CPU to a pod is a matter of `config.mesh_shape`, not code.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def create_mesh(shape: Sequence[int], axes: Sequence[str]) -> jax.sharding.Mesh:
  """A mesh over all devices; one axis size may be -1 (the rest)."""
  shape, axes = list(shape), tuple(axes)
  if len(shape) != len(axes):
    raise ValueError(f'mesh_shape {shape} and mesh_axes {axes} differ in '
                     'length.')
  num_devices = jax.device_count()
  if shape.count(-1) > 1:
    raise ValueError(f'At most one mesh axis may be -1: {shape}.')
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if num_devices % known:
      raise ValueError(f'mesh_shape {shape} does not divide {num_devices} '
                       'devices.')
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f'mesh_shape {shape} needs {math.prod(shape)} devices; '
                     f'{num_devices} are present.')
  # Auto axes: XLA propagates shardings through the model (GSPMD), so model
  # code needs no sharding annotations. (make_mesh defaults to Explicit.)
  return jax.make_mesh(tuple(shape), axes,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over every mesh axis."""
  return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> None:
  if global_batch % mesh.size:
    raise ValueError(f'batch_size {global_batch} is not divisible by the '
                     f'{mesh.size} devices of the mesh.')


def put_batch(batch: dict[str, Any], sharding: NamedSharding) -> dict:
  """This process's part of a batch -> global arrays sharded on axis 0."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)
