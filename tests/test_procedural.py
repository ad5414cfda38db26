"""Tests for the procedural cartoon-face benchmark (cvqvae_jax.data.procedural)."""

import copy
import hashlib

import numpy as np
import pytest

from cvqvae_jax.data import procedural as P

ALL_KEYS = (set(P.NUISANCE_FACTORS) | set(P.LABEL_KINDS)
            | {k for ks in P.LABEL_FACTORS.values() for k in ks})


def _with(factors, **changes):
  out = {k: np.array(v) for k, v in factors.items()}
  for k, v in changes.items():
    out[k] = np.asarray(v, np.float32)
  return out


def _find(label, value, start=0, seed=0):
  """First example index >= start whose label has the given value."""
  for i in range(start, start + 200):
    f = P.sample_factors(seed, i)
    if f[label] == value:
      return f
  raise AssertionError('no example found')


def _changed(a, b):
  return np.any(a != b, axis=-1)


def _pixel_coords(size):
  c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
  return np.meshgrid(c, c)   # x, y


# ---- factors -----------------------------------------------------------------


def test_factor_keys_dtypes_and_determinism():
  f1, f2 = P.sample_factors(3, 17), P.sample_factors(3, 17)
  assert set(f1) == ALL_KEYS
  assert list(P.LABEL_KINDS) == ['glasses', 'smile', 'big_head']
  for k, v in f1.items():
    assert isinstance(v, np.ndarray) and v.dtype == np.float32, k
    assert v.shape == ((3,) if k.endswith('_color') else ()), k
    np.testing.assert_array_equal(v, f2[k])
  assert f1['glasses'] in (0.0, 1.0) and f1['smile'] in (0.0, 1.0)
  # Label feature keys never include the y key, and nuisance/label sets are disjoint.
  for label, keys in P.LABEL_FACTORS.items():
    assert label not in keys and not set(keys) & set(P.NUISANCE_FACTORS)


@pytest.mark.parametrize('other', [(3, 18, 'train'), (4, 17, 'train'),
                                   (3, 17, 'test')])
def test_different_seed_index_or_split_gives_different_factors(other):
  base = P.sample_factors(3, 17)
  f = P.sample_factors(*other)
  continuous = [k for k in ALL_KEYS if k not in P.LABEL_KINDS]
  assert all(not np.array_equal(base[k], f[k]) for k in continuous)


def test_factor_ranges():
  fs = P.stack_factors([P.sample_factors(0, i) for i in range(500)])
  for key, (lo, hi) in [('face_x', P.FACE_X_RANGE), ('face_y', P.FACE_Y_RANGE),
                        ('face_size', P.FACE_SIZE_RANGE),
                        ('hair_length', P.HAIR_LENGTH_RANGE),
                        ('glasses_shape', P.GLASSES_SHAPE_RANGE),
                        ('glasses_size', P.GLASSES_SIZE_RANGE),
                        ('glasses_thickness', P.GLASSES_THICKNESS_RANGE),
                        ('smile_curvature', P.SMILE_CURVATURE_RANGE),
                        ('neutral_width', P.NEUTRAL_WIDTH_RANGE),
                        ('neutral_tilt', P.NEUTRAL_TILT_RANGE),
                        ('bg_color', P.BG_COLOR_RANGE)]:
    v = fs[key]
    assert v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6, key
    # Uniform-ish coverage of the range, not a constant.
    assert v.max() - v.min() > 0.8 * (hi - lo), key
  # Frame colours are dark: HSV value (= max channel) below GLASSES_VAL_RANGE[1].
  assert fs['glasses_color'].max(axis=1).max() <= P.GLASSES_VAL_RANGE[1] + 1e-6
  # Log-uniform lens shape: about half the lenses below the geometric mean.
  frac_round = np.mean(fs['glasses_shape'] < 4.0)
  assert 0.4 < frac_round < 0.6


def test_label_statistics():
  fs = P.stack_factors([P.sample_factors(1, i) for i in range(2000)])
  g, s = fs['glasses'], fs['smile']
  assert set(np.unique(g)) == {0.0, 1.0} and set(np.unique(s)) == {0.0, 1.0}
  assert 0.45 <= g.mean() <= 0.55 and 0.45 <= s.mean() <= 0.55
  assert abs(np.corrcoef(g, s)[0, 1]) < 0.1
  # Label features are independent of the label (sampled for every example).
  assert abs(np.corrcoef(g, fs['glasses_size'])[0, 1]) < 0.1


def test_stack_unstack_roundtrip():
  fs = [P.sample_factors(0, i) for i in range(5)]
  st = P.stack_factors(fs)
  assert st['bg_color'].shape == (5, 3) and st['face_x'].shape == (5,)
  back = P.unstack_factors(st)
  assert len(back) == 5
  for a, b in zip(fs, back):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
      assert b[k].shape == a[k].shape
  with pytest.raises(ValueError):
    P.stack_factors([fs[0], {'face_x': fs[1]['face_x']}])


# ---- rendering ---------------------------------------------------------------


@pytest.mark.parametrize('size', [16, 32, 64, 128, 256])
def test_render_shape_dtype_range(size):
  f = P.sample_factors(0, 5)
  img = P.render(f, size)
  assert img.shape == (size, size, 3) and img.dtype == np.float32
  assert np.isfinite(img).all() and img.min() >= -1.0 and img.max() <= 1.0
  assert img.std() > 0.1          # not a blank image
  np.testing.assert_array_equal(img, P.render(f, size))      # bit-identical
  # Corners show the background colour (the face stays inside the frame).
  np.testing.assert_allclose(img[0, 0], f['bg_color'] * 2 - 1, atol=1e-6)


def test_face_and_hair_stay_inside_the_frame():
  """Top row and side columns are pure background for every example."""
  for i in range(100):
    f = P.sample_factors(0, i)
    img = P.render(f, 32)
    bg = f['bg_color'] * 2 - 1
    for border in (img[0], img[:, 0], img[:, -1]):
      np.testing.assert_allclose(border, np.broadcast_to(bg, border.shape),
                                 atol=1e-5)


def test_render_rejects_bad_size():
  f = P.sample_factors(0, 0)
  for bad in (8, 48, 33, 512):
    with pytest.raises(ValueError, match='power of two'):
      P.render(f, bad)


def test_resolutions_agree():
  """128 px box-downsampled to 32 px matches the 32 px render (same geometry)."""
  f = _with(_find('glasses', 1.0), smile=1.0)
  big = P.render(f, 128).reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
  assert np.abs(big - P.render(f, 32)).mean() < 0.03


def test_different_examples_render_differently():
  a, b = P.render(P.sample_factors(0, 0), 32), P.render(P.sample_factors(0, 1), 32)
  assert np.abs(a - b).mean() > 0.05


@pytest.mark.parametrize('start', [0, 20, 40])
def test_glasses_drawn_over_the_eyes(start):
  f1 = _find('glasses', 1.0, start)
  f0 = _with(f1, glasses=0.0)
  size = 64
  img1, img0 = P.render(f1, size), P.render(f0, size)
  changed = _changed(img1, img0)
  assert changed.mean() > 0.03
  x, y = _pixel_coords(size)
  fx, fy, rx = float(f1['face_x']), float(f1['face_y']), float(f1['face_size'])
  ry = P.FACE_ASPECT * rx
  # Most changed pixels are in the upper half of the face bounding box ...
  upper = (np.abs(x - fx) <= rx + 2 / size) & (y >= fy - ry) & (y <= fy)
  assert (changed & upper).sum() / changed.sum() > 0.6
  # ... and all of them are in a band around the eyes, within the face width.
  ey = fy + P.EYE_DY * ry
  band = (np.abs(y - ey) < 0.4 * ry) & (np.abs(x - fx) <= rx + 2 / size)
  assert (changed & ~band).sum() == 0
  # Strong (frame) changes exist at 32 px too: glasses readable at low res.
  strong = np.abs(P.render(f1, 32) - P.render(f0, 32)).max(-1) > 0.3
  assert strong.sum() >= 25


def test_glasses_features_only_matter_when_present():
  f0 = _find('glasses', 0.0)
  img = P.render(f0, 32)
  changes = dict(glasses_color=[0.9, 0.0, 0.0], glasses_shape=7.5,
                 glasses_size=0.26, glasses_thickness=0.2)
  for k, v in changes.items():
    np.testing.assert_array_equal(P.render(_with(f0, **{k: v}), 32), img)
  f1 = _with(f0, glasses=1.0, glasses_shape=2.0, glasses_size=0.28,
             glasses_thickness=0.15, glasses_color=[0.0, 0.0, 0.5])
  img1 = P.render(f1, 64)
  for k, v in changes.items():
    assert _changed(P.render(_with(f1, **{k: v}), 64), img1).sum() > 10, k


def test_smile_drawn_at_the_mouth():
  f1 = _with(_find('smile', 1.0), smile_openness=0.8, glasses=0.0)
  f0 = _with(f1, smile=0.0)
  size = 64
  changed = _changed(P.render(f1, size), P.render(f0, size))
  assert changed.sum() > 20
  x, y = _pixel_coords(size)
  fx, fy, rx = float(f1['face_x']), float(f1['face_y']), float(f1['face_size'])
  ry = P.FACE_ASPECT * rx
  lower = (np.abs(x - fx) <= 0.6 * rx) & (y > fy + 0.2 * ry) & (y < fy + ry)
  assert (changed & ~lower).sum() == 0
  # Open smile shows a dark interior and light teeth.
  img1 = P.render(f1, 128)
  mouth = img1[:, :][lower.repeat(2, 0).repeat(2, 1)]
  assert (mouth.mean(-1) > 0.8).sum() >= 5        # teeth
  assert (mouth.max(-1) < -0.5).sum() >= 5        # dark inside


def test_smile_features_match_the_label():
  smile_keys = dict(smile_curvature=0.85, smile_openness=0.9)
  neutral_keys = dict(neutral_width=0.4, neutral_tilt=0.22)
  base = dict(smile_curvature=0.45, smile_openness=0.1, neutral_width=0.22,
              neutral_tilt=-0.05)
  f = _with(P.sample_factors(0, 3), **base)
  for y, visible, hidden in [(1.0, smile_keys, neutral_keys),
                             (0.0, neutral_keys, smile_keys)]:
    fy = _with(f, smile=y)
    img = P.render(fy, 64)
    for k, v in visible.items():
      assert _changed(P.render(_with(fy, **{k: v}), 64), img).sum() > 10, (y, k)
    for k, v in hidden.items():
      np.testing.assert_array_equal(P.render(_with(fy, **{k: v}), 64), img)


# ---- ideal swaps -------------------------------------------------------------


def test_swap_with_identical_label_factors_is_identity():
  base, donor = P.sample_factors(0, 10), P.sample_factors(0, 11)
  for label in P.LABEL_KINDS:
    same = _with(donor, **{k: base[k] for k in (label,) + P.LABEL_FACTORS[label]})
    np.testing.assert_array_equal(P.render_ideal_swap(base, same, label, 32),
                                  P.render(base, 32))


def test_swap_glasses_onto_face_without_glasses():
  x0, x1 = _find('glasses', 0.0), _find('glasses', 1.0)
  swapped = P.swap_factors(x0, x1, 'glasses')
  for k in ALL_KEYS:
    src = x1 if k in ('glasses',) + P.LABEL_FACTORS['glasses'] else x0
    np.testing.assert_array_equal(swapped[k], src[k])
  fake_pos = P.render_ideal_swap(x0, x1, 'glasses', 32)
  np.testing.assert_array_equal(fake_pos, P.render(swapped, 32))
  assert _changed(fake_pos, P.render(x0, 32)).sum() > 20
  # fake-: removing glasses equals the base with just y flipped to 0.
  fake_neg = P.render_ideal_swap(x1, x0, 'glasses', 32)
  np.testing.assert_array_equal(fake_neg, P.render(_with(x1, glasses=0.0), 32))


def test_swap_neutral_mouth_onto_smiling_face():
  x1, x0 = _find('smile', 1.0), _find('smile', 0.0)
  fake_neg = P.render_ideal_swap(x1, x0, 'smile', 64)
  expect = _with(x1, smile=0.0, neutral_width=x0['neutral_width'],
                 neutral_tilt=x0['neutral_tilt'])
  np.testing.assert_array_equal(fake_neg, P.render(expect, 64))
  # Only the mouth region changes relative to the base face.
  changed = _changed(fake_neg, P.render(x1, 64))
  _, y = _pixel_coords(64)
  assert changed.sum() > 10
  assert (changed & (y < float(x1['face_y']))).sum() == 0


def test_swap_does_not_mutate_or_alias_inputs():
  base, donor = P.sample_factors(0, 1), P.sample_factors(0, 2)
  base_c, donor_c = copy.deepcopy(base), copy.deepcopy(donor)
  out = P.swap_factors(base, donor, 'glasses')
  for k in out:
    out[k] += 1.0
  for orig, saved in ((base, base_c), (donor, donor_c)):
    for k in saved:
      np.testing.assert_array_equal(orig[k], saved[k])
  with pytest.raises(ValueError, match='glasses'):
    P.swap_factors(base, donor, 'hat')


# ---- data source -------------------------------------------------------------


def test_source_items():
  src = P.ProceduralSource(num_examples=7, image_size=32, seed=2)
  assert len(src) == 7 and 'num_examples=7' in repr(src)
  item = src[3]
  assert item['image'].shape == (32, 32, 3) and item['image'].dtype == np.float32
  assert item['label'].dtype == np.int32 and item['label'].shape == (2,)
  assert item['index'].dtype == np.int32 and item['index'] == 3
  np.testing.assert_array_equal(
      item['label'], [item['factors']['glasses'], item['factors']['smile']])
  f = P.sample_factors(2, 3)
  np.testing.assert_array_equal(item['image'], P.render(f, 32))
  np.testing.assert_array_equal(src[-1]['image'], src[6]['image'])
  one = P.ProceduralSource(num_examples=7, image_size=64, seed=2,
                           labels=('smile',))[3]
  assert one['image'].shape == (64, 64, 3)
  np.testing.assert_array_equal(one['label'], [f['smile']])


def test_train_and_test_splits_differ():
  kw = dict(num_examples=50, image_size=32, seed=0)
  train = P.ProceduralSource(split='train', **kw)
  test = P.ProceduralSource(split='test', **kw)
  train_imgs = np.stack([train[i]['image'] for i in range(50)])
  for i in range(0, 50, 7):
    # No test image is a copy of any training image.
    assert np.abs(train_imgs - test[i]['image']).max(axis=(1, 2, 3)).min() > 0.1


def test_source_validation():
  with pytest.raises(ValueError, match=r"'glasses', 'smile'"):
    P.ProceduralSource(num_examples=4, image_size=32, labels=('glasses', 'hat'))
  for bad in (24, 8, 512):
    with pytest.raises(ValueError, match='power of two'):
      P.ProceduralSource(num_examples=4, image_size=bad)
  with pytest.raises(ValueError, match='split'):
    P.ProceduralSource(num_examples=4, image_size=32, split='validation')
  src = P.ProceduralSource(num_examples=4, image_size=32)
  for bad in (4, 100, -5):
    with pytest.raises(IndexError, match='out of range'):
      src[bad]


def test_works_in_grain():
  grain = pytest.importorskip('grain')
  src = P.ProceduralSource(num_examples=10, image_size=32)
  ds = grain.MapDataset.source(src).batch(4)
  batch = ds[0]
  assert batch['image'].shape == (4, 32, 32, 3)
  assert batch['label'].shape == (4, 2) and batch['index'].tolist() == [0, 1, 2, 3]
  assert batch['factors']['bg_color'].shape == (4, 3)
  assert batch['factors']['glasses'].shape == (4,)
  np.testing.assert_array_equal(batch['image'][2], src[2]['image'])
  assert P.unstack_factors(batch['factors'])[1]['face_x'] == src[1]['factors']['face_x']


# ---- big_head: an opt-in, global label ------------------------------------

# sha256 of the float32 bytes of every pre-big_head factor (sorted names) of
# seed 3, indices 0..99, train then test, as sampled before big_head existed.
_OLD_FACTORS_SHA256 = (
    'bca01eabb993c8994d8131f3a20cc0910d0edb46b207d4ec41f70c7f517c6a69')
_OLD_KEYS = sorted(ALL_KEYS - {'big_head', 'head_scale', 'head_width'})


def _old_factor_digest(**kw):
  h = hashlib.sha256()
  for split in ('train', 'test'):
    for i in range(100):
      f = P.sample_factors(3, i, split, **kw)
      for k in _OLD_KEYS:
        h.update(np.asarray(f[k], np.float32).tobytes())
  return h.hexdigest()


def _big(f, **changes):
  return _with(f, big_head=1.0, **changes)


def _face_pixels(img, f):
  """Pixels that are not the background colour."""
  return int((np.abs(img - (f['bg_color'] * 2 - 1)).max(-1) > 1e-3).sum())


def test_appended_draws_leave_the_earlier_doubles_unchanged():
  seq = np.random.SeedSequence([1, 2, 3])
  short = np.random.default_rng(seq).random(22)
  longer = np.random.default_rng(seq).random(25)
  np.testing.assert_array_equal(short, longer[:22])


@pytest.mark.parametrize('active', [(), ('glasses', 'smile'), ('big_head',),
                                    ('glasses', 'big_head')])
def test_existing_factors_unchanged_whatever_the_active_labels(active):
  assert _old_factor_digest(active_labels=active) == _OLD_FACTORS_SHA256


def test_big_head_drawn_only_when_active_and_deterministic():
  inactive = P.stack_factors([P.sample_factors(1, i) for i in range(400)])
  assert (inactive['big_head'] == 0).all()
  fs = [P.sample_factors(1, i, active_labels=('big_head',)) for i in range(400)]
  again = P.sample_factors(1, 7, active_labels=('big_head',))
  for k in fs[7]:
    np.testing.assert_array_equal(fs[7][k], again[k])
  st = P.stack_factors(fs)
  assert 0.4 < st['big_head'].mean() < 0.6
  for key, (lo, hi) in [('head_scale', P.HEAD_SCALE_RANGE),
                        ('head_width', P.HEAD_WIDTH_RANGE)]:
    assert lo - 1e-6 <= st[key].min() and st[key].max() <= hi + 1e-6
    np.testing.assert_array_equal(st[key], inactive[key])  # always sampled
  assert P.LABEL_KINDS['big_head'] == 'presence'


def test_images_with_big_head_inactive_are_the_old_images():
  """big_head = 0 renders exactly like a factor dict without its keys."""
  src = P.ProceduralSource(num_examples=30, image_size=32, seed=3)
  for i in range(30):
    item = src[i]
    old = {k: v for k, v in item['factors'].items() if k in _OLD_KEYS}
    np.testing.assert_array_equal(item['image'], P.render(old, 32))
  one = P.ProceduralSource(num_examples=30, image_size=32, seed=3,
                           labels=('glasses',))
  np.testing.assert_array_equal(one[4]['image'], src[4]['image'])


def test_source_with_big_head_label():
  src = P.ProceduralSource(num_examples=40, image_size=32, seed=0,
                           labels=('big_head', 'glasses'))
  items = [src[i] for i in range(40)]
  y = np.array([it['label'][0] for it in items])
  assert set(y) == {0, 1}
  for it in items:
    assert it['label'][1] == it['factors']['glasses']
    np.testing.assert_array_equal(it['image'], P.render(it['factors'], 32))


def test_big_head_enlarges_the_whole_head():
  for i in range(10):
    f0 = P.sample_factors(0, i)
    f1 = _big(f0)
    img0, img1 = P.render(f0, 64), P.render(f1, 64)
    assert _face_pixels(img1, f1) > 1.1 * _face_pixels(img0, f0)
    assert _changed(img0, img1).mean() > 0.1   # a global change


def test_big_heads_are_larger_on_average_but_overlap():
  src = P.ProceduralSource(num_examples=200, image_size=32, seed=0,
                           labels=('big_head',))
  items = [src[i] for i in range(200)]
  y = np.array([it['label'][0] for it in items])
  area = np.array([_face_pixels(it['image'], it['factors']) for it in items])
  assert area[y == 1].mean() > 1.2 * area[y == 0].mean()
  assert area[y == 1].min() < area[y == 0].max()   # not trivially separable


def test_big_head_features_only_matter_when_present():
  f0 = P.sample_factors(0, 2)
  img = P.render(f0, 32)
  for k, v in dict(head_scale=1.2, head_width=0.91).items():
    np.testing.assert_array_equal(P.render(_with(f0, **{k: v}), 32), img)
  f1 = _big(f0, head_scale=1.13, head_width=1.0)
  img1 = P.render(f1, 64)
  for k, v in dict(head_scale=1.21, head_width=0.9).items():
    assert _changed(P.render(_with(f1, **{k: v}), 64), img1).sum() > 20, k


@pytest.mark.parametrize('size', [32, 64, 128])
def test_biggest_heads_stay_inside_the_frame(size):
  for i in range(20):
    f = _big(P.sample_factors(0, i), face_size=P.FACE_SIZE_RANGE[1],
             head_scale=P.HEAD_SCALE_RANGE[1],
             head_width=P.HEAD_WIDTH_RANGE[1], hair_length=1.0,
             face_x=P.FACE_X_RANGE[i % 2], face_y=P.FACE_Y_RANGE[i % 2])
    img = P.render(f, size)
    bg = f['bg_color'] * 2 - 1
    for border in (img[0], img[:, 0], img[:, -1]):
      np.testing.assert_allclose(border, np.broadcast_to(bg, border.shape),
                                 atol=1e-5)


def test_ideal_swap_of_big_head_moves_the_size():
  active = ('big_head',)
  fs = [P.sample_factors(0, i, active_labels=active) for i in range(20)]
  x0 = next(f for f in fs if f['big_head'] == 0)
  x1 = next(f for f in fs if f['big_head'] == 1)
  swapped = P.swap_factors(x0, x1, 'big_head')
  for k in ('big_head', 'head_scale', 'head_width'):
    np.testing.assert_array_equal(swapped[k], x1[k])
  np.testing.assert_array_equal(swapped['face_size'], x0['face_size'])
  fake_plus = P.render_ideal_swap(x0, x1, 'big_head', 32)
  np.testing.assert_array_equal(fake_plus, P.render(swapped, 32))
  assert _face_pixels(fake_plus, x0) > _face_pixels(P.render(x0, 32), x0)
  fake_minus = P.render_ideal_swap(x1, x0, 'big_head', 32)
  np.testing.assert_array_equal(fake_minus,
                                P.render(_with(x1, big_head=0.0), 32))
  assert _face_pixels(fake_minus, x1) < _face_pixels(P.render(x1, 32), x1)


def test_factor_shown_when_covers_every_label_factor():
  assert set(P.FACTOR_SHOWN_WHEN) == {k for ks in P.LABEL_FACTORS.values()
                                      for k in ks}
  for factor, (label, value) in P.FACTOR_SHOWN_WHEN.items():
    assert factor in P.LABEL_FACTORS[label] and value in (0, 1)
