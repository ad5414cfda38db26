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


def test_init_options_lower_the_level_unless_xla_flags_set_one(monkeypatch):
  xla_options.init_compiler_options.cache_clear()
  try:
    monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_use_thunk_runtime=true')
    options = xla_options.init_compiler_options()
    if jax.default_backend() == 'cpu':
      assert options == {**xla_options.compiler_options(),
                         **xla_options.INIT_OPTIONS}
    else:
      assert options == xla_options.compiler_options()
    xla_options.init_compiler_options.cache_clear()
    monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=0')
    assert (xla_options.init_compiler_options()
            == xla_options.compiler_options())  # The tests' level is kept.
  finally:
    xla_options.init_compiler_options.cache_clear()


def test_initial_state_at_the_init_level_has_the_same_bits(make_tiny_config):
  """The tiny model's train state compiled at XLA's default level (3) and
  at INIT_OPTIONS' level: equal, bit for bit."""
  from cvqvae_jax import train  # pylint: disable=g-import-not-at-top
  setup = train.build(make_tiny_config())
  rng = jax.random.key(0)
  states = [
      jax.jit(setup.init, compiler_options={
          **xla_options.compiler_options(), xla_options.LEVEL_FLAG: level})(
              rng)
      for level in (3, xla_options.INIT_OPTIONS[xla_options.LEVEL_FLAG])]
  for a, b in zip(*(jax.tree.leaves(s) for s in states)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
