"""What evaluations share: one encode per image for every swap, the held-out
examples read once per process, the ideal swaps rendered once; each gives
the numbers of the work it replaces, bit for bit."""

import collections

import jax
import numpy as np
import pytest

from cvqvae_jax import evaluation
from cvqvae_jax import manipulate
from cvqvae_jax import metrics
from cvqvae_jax import previews
from cvqvae_jax.data import pipeline
from conftest import init_tiny_model, tiny_config


@pytest.fixture(scope='module')
def tiny_model():
  """A freshly initialised tiny model (the shared path must give the same
  bits for any parameters) and a config with 32 held-out examples."""
  config = tiny_config(**{'data.num_test': 32, 'eval.num_examples': 32,
                          'eval.curve_examples': 16, 'eval.num_pairs': 12})
  model, params = init_tiny_model(config)
  return config, model, params


def _separate_fakes(codec, params, data, label, i0, i1, bs, scale=1.0):
  """The fakes as evaluation made them before: each pair's two images
  encoded again for every kind of fake (fused in codec.swap, or encoded,
  swapped and decoded one by one with c scaled)."""
  x, labels = data['image'], data['label']
  if scale == 1.0:
    swap = lambda a, b, la, lb: codec.swap(params, a, b, la, lb, label)
  else:
    def swap(a, b, la, lb):
      base, donor = codec.encode(params, a, la), codec.encode(params, b, lb)
      moved = manipulate.swap_label(base, donor, label)
      c = tuple(scale * c_l if l == label else c_l
                for l, c_l in enumerate(moved['c']))
      return codec.decode(params, {**moved, 'c': c})
  return (metrics.batched(swap, (x[i0], x[i1], labels[i0], labels[i1]), bs),
          metrics.batched(swap, (x[i1], x[i0], labels[i1], labels[i0]), bs))


def test_shared_encodes_give_the_fakes_of_separate_encodes(tiny_model):
  """fake+, fake-, their lambda = 0 versions and the reconstructions from
  one encode per image equal those of encoding each pair again (an image's
  codes do not depend on its batch), with or without the codes of every
  image passed in. Equal to float32 round-off: the two are different XLA
  programs, whose fusions (and so the last bit) depend on the CPU's vector
  instructions; a wrong code or pair would differ by far more."""
  config, model, params = tiny_model
  codec = evaluation.Codec(model)
  data = evaluation._collect(config, 32)  # pylint: disable=protected-access
  bs = config.eval.batch_size
  codes = evaluation.encode_examples(codec, params, data, bs)
  for label in (0, 1):
    i0, i1 = evaluation.swap_pairs(data['label'], label, 12, seed=label)
    want = _separate_fakes(codec, params, data, label, i0, i1, bs)
    want_c0 = _separate_fakes(codec, params, data, label, i0, i1, bs, 0.0)
    for given in (codes, None):
      got = evaluation.swap_fakes(codec, params, data, label, i0, i1, bs,
                                  given)
      got_c0 = evaluation.swap_fakes_without_c(codec, params, data, label,
                                               i0, i1, bs, given)
      for a, b in zip(got + got_c0, want + want_c0):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  reconstruct = lambda a, la: codec.reconstruct(params, a, la)
  want = metrics.batched(reconstruct, (data['image'], data['label']), bs)
  got = metrics.batched(
      lambda i: codec.decode(params, evaluation._placed(  # pylint: disable=protected-access
          jax.tree.map(lambda a: a[i], codes), params)),
      (np.arange(32),), bs)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_evaluate_encodes_each_image_once(tiny_model):
  """evaluate(): one pass per held-out image (evaluation_pass: C_phi and
  the encoder once) for the predictions, the swaps of both labels, the
  probes and the posterior's reconstructions; no encode, no fused swap,
  no posterior_reconstructions of their own; three decodes per image for
  the posterior (a sampled code differs from the most likely one)."""
  config, model, params = tiny_model
  codec = evaluation.Codec(model)
  calls = collections.Counter()
  for name in ('encode', '_swap', 'eval_step', 'posterior_reconstructions',
               'evaluation_pass', 'decode_errors'):
    fn = getattr(codec, name)
    setattr(codec, name, lambda p, x, *a, fn=fn, name=name, **k: (
        calls.update({name: len(jax.tree.leaves(x)[0])}),
        fn(p, x, *a, **k))[1])
  results = evaluation.evaluate(params, model, config, codec)
  n = config.eval.num_examples
  assert calls == {'evaluation_pass': n, 'decode_errors': 3 * n}, calls
  assert results == evaluation.evaluate(params, model, config)


def _separate_posterior(codec, params, data, config):
  """eval_step, encode and posterior_reconstructions as evaluate() ran
  them before evaluation_pass: three programs over every image."""
  x, labels = data['image'], data['label']
  bs = config.eval.batch_size
  rng = jax.random.key(config.seed)
  step = metrics.batched(lambda a, l: codec.eval_step(
      params, {'image': a, 'label': l, 'labelled': l >= 0}), (x, labels), bs)
  codes = evaluation.encode_examples(codec, params, data, bs)
  posterior = metrics.batched(
      lambda a, l: codec.posterior_reconstructions(params, a, l, rng),
      (x, labels), bs)
  return step, codes, posterior


@pytest.mark.parametrize('name', ['cvqvae', 'cgvae', 'vq_argmin'])
def test_one_pass_gives_the_bits_of_the_separate_programs(name):
  """evaluation_pass's predictions, errors and codes, and posterior_errors'
  reconstruction errors (decode_errors of the pass's codes) equal
  eval_step's, encode's and posterior_reconstructions', bit for bit: for
  a categorical z, a Gaussian one (its expected z, the mean, is its most
  likely one and is decoded once) and variant A (all three codes the
  nearest: decoded once)."""
  config = tiny_config(**{'data.num_test': 32, 'eval.num_examples': 32,
                          'model.name': name})
  model, params = init_tiny_model(config)
  codec = evaluation.Codec(model)
  data = evaluation._collect(config, 32)  # pylint: disable=protected-access
  step, codes, posterior = _separate_posterior(codec, params, data, config)
  rng = jax.random.key(config.seed)
  passed = metrics.batched(
      lambda a, l: codec.evaluation_pass(params, a, l, rng),
      (data['image'], data['label']), config.eval.batch_size)
  jax.tree.map(np.testing.assert_array_equal, passed['step'], step)
  jax.tree.map(np.testing.assert_array_equal, passed['codes'], codes)
  if 'entropy' in posterior:
    np.testing.assert_array_equal(passed['posterior'].pop('entropy'),
                                  posterior['entropy'])
  decoded = []
  decode_errors = codec.decode_errors
  codec.decode_errors = lambda *a: (decoded.append(1), decode_errors(*a))[1]
  errors = evaluation.posterior_errors(codec, params, data['image'], codes,
                                       passed['posterior'],
                                       config.eval.batch_size)
  for how in evaluation.POSTERIOR_CODES:
    np.testing.assert_array_equal(errors[how], posterior[how])
  batches = -(-32 // config.eval.batch_size)
  assert len(decoded) == {'cvqvae': 3, 'cgvae': 2,
                          'vq_argmin': 1}[name] * batches


def test_examples_are_read_once_per_process(tiny_model, monkeypatch):
  """_collect reads the test split once per data config: fewer examples are
  a slice of what was read, more read again; the arrays are read-only and
  forget_compiled() drops them."""
  config = tiny_model[0]
  evaluation.forget_compiled()
  reads = []
  create = pipeline.create_eval_dataset
  monkeypatch.setattr(pipeline, 'create_eval_dataset',
                      lambda *a, **k: (reads.append(1), create(*a, **k))[1])
  collect = evaluation._collect  # pylint: disable=protected-access
  small = collect(config, 16)
  assert len(reads) == 1 and len(small['image']) == 16
  full = collect(config, 32)
  assert len(reads) == 2 and len(full['image']) == 32
  again = collect(config, 16)
  assert len(reads) == 2
  jax.tree.map(np.testing.assert_array_equal, again, small)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[:16]),
               small, full)
  assert not again['image'].flags.writeable
  with pytest.raises(ValueError):
    again['image'][0] = 0.0
  other = tiny_config(**{'data.num_test': 32, 'data.seed': 1})
  collect(other, 16)
  assert len(reads) == 3
  evaluation.forget_compiled()
  fresh = collect(config, 16)
  assert len(reads) == 4
  jax.tree.map(np.testing.assert_array_equal, fresh, small)


def test_ideal_swaps_are_rendered_once(tiny_model, monkeypatch):
  """oracle_errors renders the ideal swaps of the same pairs of the same
  factors once (the learning curves), others again; forget_compiled()
  drops them. The errors are the same."""
  config = tiny_model[0]
  evaluation.forget_compiled()
  renders = []
  ideal_swaps = evaluation.ideal_swaps
  monkeypatch.setattr(evaluation, 'ideal_swaps', lambda *a: (
      renders.append(1), ideal_swaps(*a))[1])
  data = evaluation._collect(config, 32)  # pylint: disable=protected-access
  i0, i1 = evaluation.swap_pairs(data['label'], 0, 12, seed=0)
  fakes = (data['image'][i1], data['image'][i0])
  first = evaluation.oracle_errors(data, 'glasses', i0, i1, *fakes)
  assert len(renders) == 2  # fake+ and fake-
  assert evaluation.oracle_errors(data, 'glasses', i0, i1, *fakes) == first
  assert len(renders) == 2
  evaluation.oracle_errors(data, 'glasses', i0[:6], i1[:6], fakes[0][:6],
                           fakes[1][:6])
  assert len(renders) == 4
  evaluation.forget_compiled()
  assert evaluation.oracle_errors(data, 'glasses', i0, i1, *fakes) == first
  assert len(renders) == 6


def test_previews_draw_the_evaluations_images(tiny_model, monkeypatch):
  """preview_grid's pool is the first batch of the test split it read
  before (the same images, bit for bit), now taken from the examples the
  evaluations read: no read of its own after an evaluation, and the same
  picture."""
  config, model, params = tiny_model
  evaluation.forget_compiled()
  codec = evaluation.Codec(model)
  first = next(iter(pipeline.create_eval_dataset(config, 'test',
                                                 batch_size=20)))
  pool = evaluation.held_out_examples(config, 20)
  assert set(pool) == set(first)
  jax.tree.map(np.testing.assert_array_equal, pool, first)
  evaluation.evaluate(params, model, config, codec)
  reads = []
  create = pipeline.create_eval_dataset
  monkeypatch.setattr(pipeline, 'create_eval_dataset',
                      lambda *a, **k: (reads.append(1), create(*a, **k))[1])
  picture = np.asarray(previews.preview_grid(codec, params, config, num=4,
                                             pool=20))
  assert not reads
  monkeypatch.setattr(evaluation, 'held_out_examples',
                      lambda config, pool: next(iter(create(
                          config, 'test', batch_size=pool))))
  np.testing.assert_array_equal(
      np.asarray(previews.preview_grid(codec, params, config, num=4,
                                       pool=20)), picture)
