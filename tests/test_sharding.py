"""The train step on a mesh of 8 simulated CPU devices equals the
single-device step, and the whole loop runs there (README.md, "Scale")."""

import json
import subprocess
import sys
import textwrap

from conftest import FAST_COMPILE_FLAG, ROOT, subprocess_env

SCRIPT = textwrap.dedent('''
    import functools, json, sys, tempfile
    import jax, numpy as np
    sys.path.insert(0, 'tests')
    from conftest import tiny_config
    from cvqvae_jax import benchmark, sharding, train

    config = tiny_config()
    setup = train.build(config)
    mesh = setup.mesh
    state = jax.jit(setup.init)(jax.random.key(0))
    batch = benchmark.synthetic_batch(config, setup.image_shape,
                                      np.random.default_rng(0))
    step = functools.partial(train.train_step, model=setup.model,
                             objective=config.objective)
    rng = jax.random.key(1)
    ref_state, ref = jax.jit(step)(state, batch, rng)
    ref_params = jax.device_get(ref_state.params)
    put = sharding.put_batch(batch, setup.batch_sharding)
    new_state, got = train.jit_train_step(setup, config.objective)(
        jax.device_put(state, setup.state_sharding), put, rng)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(ref_params), jax.tree.leaves(new_state.params)))
    with tempfile.TemporaryDirectory() as workdir:
      results = train.train_and_evaluate(tiny_config(num_train_steps=2),
                                         workdir)
    print(json.dumps({
        'devices': jax.device_count(), 'mesh': dict(mesh.shape),
        'image_shards': len(put['image'].addressable_shards),
        'loss_ref': float(ref['loss']), 'loss_sharded': float(got['loss']),
        'max_param_diff': diff,
        'accuracy': results['eval_accuracy_glasses']}))
''')


def test_eight_device_mesh_matches_one_device():
  env = subprocess_env(
      XLA_FLAGS='--xla_force_host_platform_device_count=8 ' + FAST_COMPILE_FLAG,
      JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['devices'] == 8 and out['mesh'] == {'data': 8}
  assert out['image_shards'] == 8
  assert abs(out['loss_ref'] - out['loss_sharded']) < 1e-4
  assert out['max_param_diff'] < 1e-5
  # A share of the 16 evaluated test images (no padding counted).
  assert abs(out['accuracy'] * 16 - round(out['accuracy'] * 16)) < 1e-5
