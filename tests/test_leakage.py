"""Leakage probes (cvqvae_jax/leakage.py) and their place in evaluation."""

import numpy as np
import pytest

from cvqvae_jax import leakage
from cvqvae_jax.data import procedural

N = 1000


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_continuous_probe_is_zero_for_noise_and_one_for_copies():
  rng = _rng()
  f = rng.uniform(-1, 1, N)
  assert leakage.probe(rng.normal(size=(N, 8)), f) < 0.1
  mix = rng.normal(size=(3, 10))
  linear = np.stack([f, rng.normal(size=N), rng.normal(size=N)], 1) @ mix
  assert leakage.probe(linear, f) > 0.9
  nonlinear = np.stack([np.sin(3 * f), f ** 2, np.cos(2 * f)], 1) @ mix
  assert leakage.probe(nonlinear, f) > 0.9
  # A factor that only enters squared is still found.
  assert leakage.probe(np.stack([f ** 2, rng.normal(size=N)], 1) @ mix[:2],
                       f ** 2) > 0.9


def test_vector_targets_and_masks():
  rng = _rng(1)
  colour = rng.uniform(0, 1, (N, 3))
  x = np.tanh(colour @ rng.normal(size=(3, 6)))
  assert leakage.probe(x, colour) > 0.9
  assert leakage.probe(rng.normal(size=(N, 6)), colour) < 0.1
  mask = rng.random(N) < 0.5
  partly = np.where(mask[:, None], x, rng.normal(size=x.shape))
  assert leakage.probe(partly, colour, mask=mask) > 0.9
  assert leakage.probe(partly, colour, mask=~mask) < 0.1
  assert leakage.probe(x, colour, mask=np.arange(N) < 5) is None  # too few
  assert leakage.probe(x, np.ones(N)) is None                     # constant


def test_binary_probe_is_zero_for_noise_and_one_for_copies():
  rng = _rng(2)
  y = (rng.random(N) < 0.3).astype(int)   # imbalanced: BCA, not accuracy
  assert leakage.probe(rng.normal(size=(N, 64)), y, 'binary') < 0.1
  copy = np.stack([2 * y - 1, rng.normal(size=N)], 1) @ rng.normal(size=(2, 16))
  assert leakage.probe(copy, y, 'binary') > 0.9
  # Nonlinear: y only decides the sign of a feature that is then squared
  # away from zero... here y flips sin(pi u), u also given.
  u = rng.uniform(-1, 1, N)
  z = np.stack([np.sin(np.pi * u) * (2 * y - 1) + 0.5 * (2 * y - 1), u], 1)
  assert leakage.probe(z @ rng.normal(size=(2, 8)), y, 'binary') > 0.9
  # A wide, z-like input with the label spread thinly over many entries.
  wide = rng.normal(size=(N, 1024))
  wide[:, :64] += 0.8 * (2 * y[:, None] - 1)
  assert leakage.probe(wide, y, 'binary') > 0.8
  assert leakage.probe(rng.normal(size=(N, 1024)), y, 'binary') < 0.1


def test_probe_is_deterministic_and_scores_held_out_examples():
  rng = _rng(3)
  x, t = rng.normal(size=(200, 5)), rng.normal(size=200)
  assert leakage.probe(x, t, seed=4) == leakage.probe(x, t, seed=4)
  fit = leakage.halves(200, 4)
  assert fit.sum() == 100
  # Memorising the fit half does not help: targets that are pure noise
  # score 0 even with one feature per example.
  assert leakage.probe(np.eye(200), t) < 0.1
  with pytest.raises(ValueError, match='kind'):
    leakage.probe(x, t, 'ordinal')


def _procedural(n, labels=('glasses', 'smile')):
  fs = procedural.stack_factors([
      procedural.sample_factors(0, i, 'test', labels) for i in range(n)])
  return fs, np.stack([fs[l] for l in labels], 1).astype(int)


def test_decoder_features():
  c = np.arange(12.0).reshape(3, 4)
  y = np.array([1, 0, 1])
  f, mask = leakage.decoder_features(c, y, 'presence')
  np.testing.assert_array_equal(mask, [True, False, True])
  np.testing.assert_array_equal(f, c)
  f, mask = leakage.decoder_features(c, y, 'both')
  assert mask.all()
  np.testing.assert_array_equal(f[1], [4, 5, 0, 0])
  np.testing.assert_array_equal(f[0], [0, 0, 2, 3])


def _glasses_look(fs):
  """The glasses' own factors, standardised: (n, 6)."""
  own = np.stack([fs['glasses_size'], fs['glasses_thickness'],
                  fs['glasses_shape'], *fs['glasses_color'].T], 1)
  return (own - own.mean(0)) / own.std(0)


def test_c_leakage_separates_clean_and_leaky_features():
  fs, labels = _procedural(1000)
  rng = _rng(5)
  own = _glasses_look(fs)
  clean = own @ rng.normal(size=(own.shape[1], 8))
  clean += 0.3 * np.tanh(clean)
  out = leakage.c_leakage(clean, labels[:, 0], 'presence', 'glasses', fs)
  assert set(out) == {'c_leakage', 'c_leakage_factors',
                      'c_own_factors_score', 'c_own_factors'}
  assert out['c_leakage'] < 0.1 and out['c_own_factors_score'] > 0.8
  assert set(out['c_own_factors']) == set(procedural.LABEL_FACTORS['glasses'])
  # Inactive big_head (y always 0) and its hidden factors are left out.
  assert 'big_head' not in out['c_leakage_factors']
  assert set(procedural.NUISANCE_FACTORS) <= set(out['c_leakage_factors'])
  leaky = np.concatenate([clean, np.stack([fs['face_x'], fs['face_size']],
                                          1)], 1)
  out = leakage.c_leakage(leaky, labels[:, 0], 'presence', 'glasses', fs)
  assert out['c_leakage_factors']['face_x'] > 0.9
  assert out['c_leakage_factors']['skin_tone'] < 0.1
  for v in (*out['c_leakage_factors'].values(),
            *out['c_own_factors'].values()):
    assert 0.0 <= v <= 1.0


def test_z_own_factors_reads_the_label_look_from_z():
  fs, labels = _procedural(1000)
  rng = _rng(7)
  own = _glasses_look(fs)
  # A z that holds the glasses' look (where they are worn) beside noise, and
  # one of noise alone.
  holds = np.concatenate([own * labels[:, :1], rng.normal(size=(1000, 4))], 1)
  out = leakage.z_own_factors(holds.reshape(1000, 1, 1, -1), 'glasses', fs)
  assert set(out['z_own_factors']) == set(procedural.LABEL_FACTORS['glasses'])
  assert out['z_own_factors_score'] > 0.8
  blind = leakage.z_own_factors(rng.normal(size=(1000, 8)), 'glasses', fs)
  assert blind['z_own_factors_score'] < 0.1


def test_leakage_metrics_per_label():
  fs, labels = _procedural(300)
  rng = _rng(6)
  codes = {'c': (rng.normal(size=(300, 3)), rng.normal(size=(300, 6))),
           'z_q': np.concatenate([labels[:, :1, None, None] * np.ones((1, 2, 2, 2)),
                                  rng.normal(size=(300, 1, 2, 2))], 1)}
  out = leakage.leakage_metrics(codes, labels, ('glasses', 'smile'),
                                ('presence', 'both'), fs)
  assert out['glasses']['z_leakage'] > 0.9    # z copies glasses' y
  assert out['smile']['z_leakage'] < 0.15
  assert out['smile']['c_leakage'] < 0.15
  no_factors = leakage.leakage_metrics(codes, labels, ('glasses', 'smile'),
                                       ('presence', 'both'))
  assert set(no_factors['glasses']) == {'z_leakage'}
  assert 'z_own_factors_score' in out['glasses']


def test_leakage_metrics_equals_the_probes_one_by_one(monkeypatch):
  """leakage_metrics fits the z probes of all labels in one call, so that
  every label's z_leakage shares one ridge fit; its numbers are those of
  z_leakage, c_leakage and z_own_factors called one by one, bit for bit,
  in the same order."""
  fs, labels = _procedural(300)
  rng = _rng(7)
  codes = {'c': (rng.normal(size=(300, 3)), rng.normal(size=(300, 6))),
           'z_q': np.concatenate(
               [labels[:, :1, None, None] * np.ones((1, 2, 2, 2)),
                rng.normal(size=(300, 1, 2, 2))], 1)}
  names, kinds = ('glasses', 'smile'), ('presence', 'both')
  want = {}
  for l, (name, kind) in enumerate(zip(names, kinds)):
    want[name] = {'z_leakage': leakage.z_leakage(codes['z_q'], labels[:, l]),
                  **leakage.c_leakage(codes['c'][l], labels[:, l], kind, name,
                                      fs),
                  **leakage.z_own_factors(codes['z_q'], name, fs)}
  fits = []
  ridge = leakage._FeatureRidge  # pylint: disable=protected-access
  monkeypatch.setattr(leakage, '_FeatureRidge',
                      lambda *a: (fits.append(1), ridge(*a))[1])
  got = leakage.leakage_metrics(codes, labels, names, kinds, fs)
  assert got == want
  assert [list(r) for r in got.values()] == [list(r) for r in want.values()]
  # One by one: 12 fits (z_leakage twice on the same examples); here 11.
  assert len(fits) == 11


# ---- in evaluation ------------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_model():
  """A freshly initialised tiny model (the probes need no trained one) and
  a config with 64 held-out examples, enough for each probe's halves."""
  from conftest import init_tiny_model, tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'data.num_test': 64, 'eval.num_examples': 64,
                          'eval.batch_size': 16})
  model, params = init_tiny_model(config)
  return config, model, params


def test_evaluate_reports_leakage(tiny_model):
  from cvqvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  config, model, params = tiny_model
  results = evaluation.evaluate(params, model, config)
  for name in ('glasses', 'smile'):
    for key in ('c_leakage', 'c_own_factors_score', 'z_leakage'):
      value = results[f'eval_{name}_{key}']
      assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, key)


@pytest.mark.usefixtures('stub_classifiers')
def test_paper_evaluation_reports_leakage(tiny_model, tmp_path):
  from cvqvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  config, model, params = tiny_model
  results = evaluation.paper_evaluation(params, model, config, str(tmp_path),
                                        step=0)
  for name, row in results['labels'].items():
    for key in ('c_leakage', 'z_leakage', 'c_own_factors_score'):
      assert 0.0 <= row[key] <= 1.0, (name, key)
    assert set(procedural.NUISANCE_FACTORS) <= set(row['c_leakage_factors'])
    assert set(row['c_own_factors']) <= set(procedural.LABEL_FACTORS[name])
    assert all(0.0 <= v <= 1.0 for v in row['c_leakage_factors'].values())
  table = evaluation.format_table(results)
  assert 'c-leak' in table and 'z-leak' in table
