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

`jit_init` (the train state's initialiser) also lowers XLA's CPU
optimisation level from 3 to 2, which compiles it 2-4x faster to the same
bits.
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


# XLA's CPU backend compiles at optimisation level 3 by default. An
# initialiser (Flax's init of every parameter and Adam's zeros: XLA drops
# the forward pass, whose outputs init does not return, and keeps random
# bits, truncated normals and zeros) compiles 2-4x faster at level 2, to the
# same bits (every model checked; docs/performance.md, "Start-up"). The
# train step at level 2 does not give the same bits: it keeps the default.
LEVEL_FLAG = 'xla_backend_optimization_level'
INIT_OPTIONS = {LEVEL_FLAG: 2}


@functools.cache
def init_compiler_options() -> dict[str, Any]:
  """compiler_options() plus INIT_OPTIONS on CPU, unless XLA's defaults are
  kept (CVQVAE_JAX_XLA_DEFAULTS=1) or XLA_FLAGS sets a level itself."""
  if (os.environ.get(KEEP_DEFAULTS_ENV, '') not in ('', '0')
      or jax.default_backend() != 'cpu'
      or LEVEL_FLAG in os.environ.get('XLA_FLAGS', '')):
    return compiler_options()
  return {**compiler_options(), **INIT_OPTIONS}


def jit_init(fun: Callable, **kwargs) -> Any:
  """`jit` for functions that initialise parameters (no training step and
  no evaluation: their numbers would change with the level)."""
  return jax.jit(fun, compiler_options=init_compiler_options() or None,
                 **kwargs)
