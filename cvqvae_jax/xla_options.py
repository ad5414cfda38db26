"""XLA compiler options of the library's jitted functions.

On CPU, XLA (jaxlib 0.10) hands convolutions to YNNPACK fusions by default;
its own Eigen convolutions are 1.7-3.4x faster for this model's 3x3
convolutions (forward and backward) on the development CPU: a 128 px,
129 -> 64 channel convolution trains at 84 instead of 27 GFLOP/s, and the
paper-size train step takes 0.36-0.45 of the time, the default one 0.8
(docs/performance.md, "What the profile showed").
`jit` therefore compiles with `xla_cpu_experimental_ynn_fusion_type=''` (no
YNNPACK fusion) on CPU, and with XLA's defaults on GPU and TPU.

The option is experimental in XLA. It is used only when this jaxlib accepts
it (checked once by compiling a trivial function); an XLA without it gets
its defaults. CVQVAE_JAX_XLA_DEFAULTS=1 in the environment keeps XLA's
defaults everywhere.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from absl import logging
import jax

CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}
KEEP_DEFAULTS_ENV = 'CVQVAE_JAX_XLA_DEFAULTS'


@functools.cache
def compiler_options() -> dict[str, Any]:
  """The options `jit` passes to XLA on the default backend (may be {})."""
  if os.environ.get(KEEP_DEFAULTS_ENV, '') not in ('', '0'):
    return {}
  if jax.default_backend() != 'cpu':
    return {}
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(
        1.0).compile()
  except Exception as e:  # pylint: disable=broad-except
    logging.info('XLA does not accept %s (%s): using its defaults.',
                 CPU_OPTIONS, str(e).splitlines()[0])
    return {}
  return dict(CPU_OPTIONS)


def jit(fun: Callable, **kwargs) -> Any:
  """jax.jit with `compiler_options()`: the library's jit."""
  return jax.jit(fun, compiler_options=compiler_options() or None, **kwargs)
