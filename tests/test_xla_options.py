"""xla_options: the library's jit and the CPU compiler option it adds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import xla_options


def _conv_grad(x, w):
  def loss(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.sum(y ** 2)
  return jax.grad(loss, argnums=(0, 1))(x, w)


def test_options_on_this_backend():
  options = xla_options.compiler_options()
  if jax.default_backend() != 'cpu':
    assert options == {}
  else:  # {} only when this XLA does not know the option.
    assert options in ({}, xla_options.CPU_OPTIONS)


def test_environment_switch_keeps_xla_defaults(monkeypatch):
  xla_options.compiler_options.cache_clear()
  try:
    monkeypatch.setenv(xla_options.KEEP_DEFAULTS_ENV, '1')
    assert xla_options.compiler_options() == {}
  finally:
    xla_options.compiler_options.cache_clear()


def test_jit_compiles_convolutions_without_ynnpack_and_same_numbers():
  if not xla_options.compiler_options():
    pytest.skip('XLA defaults on this backend or jaxlib.')
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 8))
  w = 0.1 * jax.random.normal(jax.random.key(1), (3, 3, 8, 8))
  ours = xla_options.jit(_conv_grad)
  text = ours.lower(x, w).compile().as_text()
  assert 'ynn_fusion' not in text
  got, want = ours(x, w), jax.jit(_conv_grad)(x, w)
  for g, e in zip(got, want):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
