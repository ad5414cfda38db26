"""config.dtype: bfloat16 activations and convolutions, float32 elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import benchmark
from cvqvae_jax import config_checks
from cvqvae_jax import train

from conftest import tiny_config

# Relative difference allowed between the loss of a bfloat16 and a float32
# pass with the same parameters, batch and noise. bfloat16 keeps 8 bits of
# mantissa (a rounding error of up to 2^-9 ~ 0.2 % per value); the loss
# averages many of them. Measured at initialisation: 0.4e-4 to 2.9e-4 on the
# tiny models of these tests, 0.1e-4 to 1.6e-4 at configs/default.py's size,
# for every model (docs/performance.md).
LOSS_RTOL = 2e-3


def _setups(**overrides):
  f32 = train.build(tiny_config(dtype='float32', **overrides))
  bf16 = train.build(tiny_config(dtype='bfloat16', **overrides))
  return f32, bf16


def _batch(config, setup):
  return benchmark.synthetic_batch(config, setup.image_shape,
                                   np.random.default_rng(0))


def _conv_dtypes(jaxpr) -> set:
  """The operand dtypes of every convolution in a (closed) jaxpr, nested
  jaxprs included."""
  found = set()

  def visit(j):
    j = getattr(j, 'jaxpr', j)  # a ClosedJaxpr's Jaxpr
    for eqn in j.eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        found.update(str(v.aval.dtype) for v in eqn.invars)
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if hasattr(getattr(sub, 'jaxpr', sub), 'eqns'):
            visit(sub)
  visit(jaxpr)
  return found


# jdvae is a CGVAE (AdaIN decoder) with JDVAE's feature net; ccvae builds
# its encoder itself.
@pytest.mark.parametrize('name', ['cvqvae', 'ccvae', 'jdvae'])
def test_bfloat16_loss_is_close_to_float32(name):
  overrides = {'model.name': name, 'stage_one.model': ''}
  f32, bf16 = _setups(**overrides)
  config = tiny_config(**overrides)
  # The same parameters: initialisation does not depend on the dtype.
  params = f32.init(jax.random.key(0)).params
  params_bf16 = bf16.init(jax.random.key(0)).params
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_bf16)):
    assert a.dtype == b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)

  batch = _batch(config, f32)
  rng = jax.random.key(3)
  losses = {}
  for label, setup in (('float32', f32), ('bfloat16', bf16)):
    loss, terms = jax.jit(lambda p, s=setup: train.loss_fn(
        p, batch, rng, 0, model=s.model, objective=config.objective))(params)
    losses[label] = float(loss)
    # Every logged term stays float32.
    assert all(v.dtype == jnp.float32 for v in terms.values()), terms
  assert losses['float32'] > 0
  rel = abs(losses['bfloat16'] - losses['float32']) / losses['float32']
  assert rel < LOSS_RTOL, losses
  # ... and bfloat16 really did something: the two passes differ.
  assert losses['bfloat16'] != losses['float32']


def test_bfloat16_convolutions_float32_state_and_outputs():
  f32, bf16 = _setups()
  config = tiny_config(dtype='bfloat16')
  state = train.jit_init(bf16)(jax.random.key(0))
  batch = _batch(config, bf16)
  forward = lambda s: lambda p: s.model.apply(
      {'params': p}, batch['image'], batch['label'], batch['labelled'],
      train=True, rngs={'sample': jax.random.key(1)})
  assert _conv_dtypes(jax.make_jaxpr(forward(bf16))(state.params)) == {
      'bfloat16'}
  assert _conv_dtypes(jax.make_jaxpr(forward(f32))(state.params)) == {
      'float32'}
  out = forward(bf16)(state.params)
  for key in ('z_e', 'z_logits', 'z_q', 'logits_y', 'x_hat'):
    assert out[key].dtype == jnp.float32, key
  assert all(c.dtype == jnp.float32 for c in out['c'])

  step = train.jit_train_step(bf16, config.objective)
  state, metrics = step(state, batch, jax.random.key(2))
  leaves = jax.tree.leaves((state.params, state.opt_state))
  floats = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_unknown_dtype_is_refused():
  with pytest.raises(ValueError, match=r"^dtype must be one of .*'float16'"):
    config_checks.validate(tiny_config(dtype='float16'))
