"""Real-data sources on miniature releases in the official formats: the label
policies' counts, preprocessing, splits, errors, and every paper config
training a few steps (two of them from the command line)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cvqvae_jax import config_files
from cvqvae_jax import train
from cvqvae_jax.data import errors
from cvqvae_jax.data import images
from cvqvae_jax.data import pipeline
from cvqvae_jax.data import policies
from cvqvae_jax.data import releases
from cvqvae_jax.data import sources

import fake_releases
from conftest import ROOT, subprocess_env, tiny_config

PAPER_CONFIGS = ('celeba_glasses', 'celeba_smile', 'celeba_beard',
                 'celeba_makeup', 'celeba_glasses_smile',
                 'chexpert_cardiomegaly', 'chexpert_atelectasis',
                 'chexpert_consolidation')
# The paper configs shrunk to tiny_config's sizes (also as CLI flags).
TINY = {'batch_size': 8, 'num_train_steps': 2, 'log_every_steps': 1,
        'checkpoint_every_steps': 2, 'data.image_size': 16,
        'data.read_threads': 1, 'data.worker_count': 0,
        'model.encoder_widths': (8, 8, 8, 8, 8),
        'model.feature_widths': (8, 8, 8, 8, 8),
        'model.decoder_widths': (8, 8, 8, 8, 8), 'model.latent_grid': 4,
        'model.num_codes': 16, 'model.code_dim': 4, 'model.num_features': 3,
        'eval.batch_size': 8, 'eval.num_examples': 16, 'eval.num_pairs': 8}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('releases')
  out = {'root': str(root)}
  out['celeba'] = str(root / 'celeba')
  out['celeba_attr'] = fake_releases.make_celeba(out['celeba'], n=60)
  out['chexpert_parent'] = str(root / 'chexpert')
  out['chexpert'] = fake_releases.make_chexpert(out['chexpert_parent'])
  out['csv'] = str(root / 'mine')
  out['csv_values'] = fake_releases.make_csv(out['csv'])
  out['tfds'] = str(root / 'tfds')
  fake_releases.make_tfds(out['tfds'], 'celeb_a', out['celeba'])
  fake_releases.make_tfds(out['tfds'], 'chexpert', out['chexpert'])
  return out


def _data_config(source, name, data_dir, labels, **extra):
  return tiny_config(**{'data.source': source, 'data.name': name,
                        'data.data_dir': data_dir, 'data.labels': labels,
                        **{f'data.{k}': v for k, v in extra.items()}}).data


def _all(source):
  return [source[i] for i in range(len(source))]


# ---- label policies -------------------------------------------------------

def test_celeba_policy_maps_paper_labels_and_inverts_no_beard(data):
  attr = data['celeba_attr']['attributes']
  table = policies.celeba(attr, ('glasses', 'smile', 'beard', 'makeup'))
  np.testing.assert_array_equal(table.labels[:, 0], attr['Eyeglasses'] == 1)
  np.testing.assert_array_equal(table.labels[:, 1], attr['Smiling'] == 1)
  np.testing.assert_array_equal(table.labels[:, 2], attr['No_Beard'] == -1)
  np.testing.assert_array_equal(table.labels[:, 3], attr['Heavy_Makeup'] == 1)
  assert table.keep.all() and table.known.all()
  beard = table.counts['beard']
  assert beard['y=1 (No_Beard = -1)'] == (attr['No_Beard'] == -1).sum()
  assert beard['y=0 (No_Beard = 1)'] == (attr['No_Beard'] == 1).sum()
  # Any CelebA attribute works too; a wrong one lists what exists.
  assert policies.celeba(attr, ('bald',)).labels[:, 0].sum() == (
      attr['Bald'] == 1).sum()
  with pytest.raises(errors.DatasetFormatError, match='Eyeglasses'):
    policies.celeba(attr, ('spectacles',))


def test_chexpert_policy_counts_every_rule(data):
  # train.csv: 8 cycles, valid.csv: 1 (fake_releases.CHEXPERT_CYCLE).
  release = sources.load_release(_data_config(
      'folder', 'chexpert', data['chexpert'], ('cardiomegaly',)))
  assert release.table.counts == {
      'rows': 72, "dropped: view (data.view='frontal')": 18,
      'cardiomegaly': {'y=1 (pathology 1.0)': 16 + 2,
                       'y=0 (No Finding 1.0)': 8 + 1,
                       'dropped: uncertain (-1.0)': 8,
                       'dropped: blank': 8,
                       'dropped: 0.0 without No Finding': 8 + 3},
      'kept': 27}
  every_view = sources.load_release(_data_config(
      'folder', 'chexpert', data['chexpert'], ('cardiomegaly',), view='all'))
  # Each cycle has one lateral No Finding row and one lateral positive.
  assert every_view.table.counts['cardiomegaly']['y=1 (pathology 1.0)'] == 27
  assert every_view.table.counts['kept'] == 27 + 18


def test_chexpert_several_labels_mark_unknown_ones():
  nan = float('nan')
  obs = {'No Finding': np.array([1.0, nan, nan, nan]),
         'Cardiomegaly': np.array([nan, 1.0, 0.0, -1.0]),
         'Atelectasis': np.array([nan, nan, 1.0, -1.0])}
  table = policies.chexpert(obs, np.ones(4, bool),
                            ('cardiomegaly', 'atelectasis'))
  np.testing.assert_array_equal(table.keep, [True, True, True, False])
  np.testing.assert_array_equal(table.labels[:3], [[0, 0], [1, 0], [0, 1]])
  np.testing.assert_array_equal(table.known[:3],
                                [[True, True], [True, False], [True, True]])


def test_csv_blank_cells_are_unknown_and_test_rows_complete(data):
  config = _data_config('csv', 'mine', data['csv'], ('tumour', 'stained'))
  release = sources.load_release(config)
  truth = data['csv_values']
  np.testing.assert_array_equal(release.table.known, ~truth['blank'])
  np.testing.assert_array_equal(release.table.labels[~truth['blank']],
                                truth['values'][~truth['blank']])
  assert release.table.counts['tumour']['unknown (blank)'] == \
      truth['blank'][:, 0].sum()
  train_rows, _ = sources.split_rows(release, 'train', config)
  test_rows, counts = sources.split_rows(release, 'test', config)
  assert not set(train_rows) & set(test_rows)
  assert len(train_rows) == 32  # 80 % of 40
  assert release.table.known[test_rows].all()
  assert counts['examples'] + counts['dropped: a label unknown'] == 8


# ---- sources, preprocessing and splits --------------------------------------

def test_center_crop_keeps_the_middle_square():
  a = np.zeros((218, 178, 3), np.uint8)
  a[:20] = a[198:] = 255  # Outside the centred 178x178 square.
  image = Image.fromarray(a)
  x = images.preprocess(image, 16, 3, 'center')
  assert x.shape == (16, 16, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x, -1.0)
  assert images.preprocess(image, 16, 3, 'none').max() > 0.5


def test_sixteen_bit_grey_is_stretched_to_its_range(tmp_path):
  a = np.linspace(1000, 3000, 32 * 24).reshape(24, 32).astype(np.uint16)
  path = str(tmp_path / 'xray.png')
  Image.fromarray(a).save(path)
  assert images.channels_of(path) == 1
  x = images.load(path, path, 8, 1, 'none')
  assert x.shape == (8, 8, 1)
  # 1000..3000 -> 0..255 before the resize averages each 4x3 block.
  assert -0.9 < x.min() < -0.85 and 0.85 < x.max() < 0.9
  assert (np.diff(x[:, 0, 0]) > 0).all()  # Brightness order kept.


def test_sources_give_the_element_contract(data):
  cases = [('folder', 'celeba', data['celeba'], ('glasses',), 3),
           ('folder', 'chexpert', data['chexpert'], ('cardiomegaly',), 1),
           ('csv', 'mine', data['csv'], ('tumour', 'stained'), 1),
           ('tfds', 'celeba', data['tfds'], ('smile',), 3),
           ('tfds', 'chexpert', data['tfds'], ('atelectasis',), 1)]
  for source, name, data_dir, labels, channels in cases:
    config = _data_config(source, name, data_dir, labels)
    for split in ('train', 'test'):
      for e in _all(pipeline.create_source(config, split)):
        assert e['image'].shape == (16, 16, channels), (source, name)
        assert e['image'].dtype == np.float32
        assert -1.0 <= e['image'].min() and e['image'].max() <= 1.0
        assert e['label'].dtype == np.int32 and e['label'].shape == (
            len(labels),)
        assert e['known'].shape == (len(labels),)
        if split == 'test':
          assert e['known'].all()


def test_seeded_split_is_80_20_disjoint_and_fixed(data):
  config = _data_config('folder', 'celeba', data['celeba'], ('glasses',))
  release = sources.load_release(config)
  train_rows, _ = sources.split_rows(release, 'train', config)
  test_rows, _ = sources.split_rows(release, 'test', config)
  assert (len(train_rows), len(test_rows)) == (48, 12)
  assert sorted([*train_rows, *test_rows]) == list(range(60))
  config.seed = 1
  assert (sources.split_rows(release, 'test', config)[0] != test_rows).any()
  config.split = 'release'  # list_eval_partition.txt: 2 is test.
  np.testing.assert_array_equal(sources.split_rows(release, 'test', config)[0],
                                np.arange(54, 60))


def test_celeba_archive_csv_layout_reads_as_the_txt_release(tmp_path):
  """list_attr_celeba.csv / list_eval_partition.csv and the archive's
  img_align_celeba/img_align_celeba/ give the same release as the text
  files of the same data."""
  made = fake_releases.make_celeba_csv(str(tmp_path / 'archive'), n=30)
  txt = sources.load_release(_data_config(
      'folder', 'celeba', str(tmp_path / 'archive' / '_txt'), ('beard',)))
  archive = str(tmp_path / 'archive' / 'other')
  os.makedirs(archive)
  for name in ('list_attr_celeba.csv', 'list_eval_partition.csv',
               'img_align_celeba'):
    os.rename(str(tmp_path / 'archive' / name), os.path.join(archive, name))
  config = _data_config('folder', 'celeba', archive, ('beard',),
                        split='release')
  csv_release = sources.load_release(config)
  np.testing.assert_array_equal(csv_release.table.labels, txt.table.labels)
  np.testing.assert_array_equal(
      csv_release.table.labels[:, 0],
      made['attributes']['No_Beard'] < 0)  # beard = not No_Beard
  np.testing.assert_array_equal(csv_release.release_test, txt.release_test)
  assert csv_release.release_test.sum() == 3  # partition 2: the last 10 %
  assert all(p.startswith(os.path.join(archive, 'img_align_celeba',
                                       'img_align_celeba'))
             for p in csv_release.items)
  for e in _all(pipeline.create_source(config, 'test')):
    assert e['image'].shape == (16, 16, 3)
  bad = tmp_path / 'bad.csv'
  bad.write_text('image_id,Smiling\n000001.jpg,2\n')
  with pytest.raises(errors.DatasetFormatError, match='1 or -1'):
    releases.read_celeba_attributes_csv(str(bad))


def test_images_follow_their_labels(data):
  # fake_releases draws a white band on top of every image with y = 1.
  config = _data_config('folder', 'celeba', data['celeba'], ('glasses',),
                        crop='none')
  for e in _all(pipeline.create_source(config, 'train')):
    assert (e['image'][0].min() > 0.9) == bool(e['label'][0])


def test_chexpert_data_dir_may_be_the_release_or_its_parent(data):
  def lengths(data_dir):
    config = _data_config('folder', 'chexpert', data_dir, ('consolidation',))
    return [len(pipeline.create_source(config, s)) for s in ('train', 'test')]
  assert lengths(data['chexpert']) == lengths(data['chexpert_parent'])


def test_tfds_source_reads_the_same_data_without_tensorflow(data):
  def test_images(source):
    config = _data_config(source, 'chexpert', data[
        'tfds' if source == 'tfds' else 'chexpert'], ('cardiomegaly',),
                          split='release')  # valid.csv / tfds 'validation'
    return sorted((float(e['image'].sum()), int(e['label'][0]))
                  for e in _all(pipeline.create_source(config, 'test')))
  assert test_images('tfds') == test_images('folder')
  assert sources.load_release(_data_config(
      'tfds', 'chexpert', data['tfds'], ('cardiomegaly',))).table.counts == \
      sources.load_release(_data_config(
          'folder', 'chexpert', data['chexpert'],
          ('cardiomegaly',))).table.counts
  # data_dir may also name the dataset's own folder.
  assert len(pipeline.create_source(_data_config(
      'tfds', 'chexpert', os.path.join(data['tfds'], 'chexpert'),
      ('cardiomegaly',)), 'train')) == 22
  assert 'tensorflow' not in sys.modules


# ---- errors -----------------------------------------------------------------

def test_missing_data_names_dataset_path_layout_and_origin(tmp_path):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(errors.DatasetNotFoundError) as info:
    sources.load_release(_data_config('folder', 'celeba', missing,
                                      ('glasses',)))
  message = str(info.value)
  assert 'CelebA' in message and missing in message
  assert 'list_attr_celeba.txt' in message and 'mmlab' in message
  with pytest.raises(errors.DatasetNotFoundError) as info:
    sources.load_release(_data_config('folder', 'chexpert', str(tmp_path),
                                      ('cardiomegaly',)))
  assert 'train.csv' in str(info.value) and 'stanford' in str(info.value)
  with pytest.raises(errors.DatasetNotFoundError, match='CHEXPERT_DIR'):
    sources.load_release(_data_config('folder', 'chexpert', '',
                                      ('cardiomegaly',)))
  with pytest.raises(errors.DatasetNotFoundError, match='tfds build celeb_a'):
    sources.load_release(_data_config('tfds', 'celeba', str(tmp_path),
                                      ('glasses',)))


def test_malformed_attribute_list_names_the_problem(tmp_path):
  names = ' '.join(policies.CELEBA_ATTRIBUTES)
  cases = {'2\n' + names + '\n000001.jpg' + ' 1' * 40 + '\n': 'says 2',
           '1\n' + names + '\n000001.jpg' + ' 1' * 39 + '\n': 'line 3',
           '1\n' + names + '\n000001.jpg' + ' 1' * 39 + ' x\n': '1 or -1',
           '1\n' + names + '\n000001.jpg' + ' 1' * 39 + ' 0\n': '1 or -1'}
  for i, (text, message) in enumerate(cases.items()):
    path = tmp_path / f'{i}.txt'
    path.write_text(text)
    with pytest.raises(errors.DatasetFormatError, match=message):
      releases.read_celeba_attributes(str(path))
  path.write_text('1\n' + names + '\n000001.jpg' + ' -1' * 40 + '\n')
  assert releases.read_celeba_attributes(str(path))[1]['Young'][0] == -1


def test_unknown_label_columns_list_the_columns(data):
  with pytest.raises(errors.DatasetFormatError) as info:
    sources.load_release(_data_config('csv', 'mine', data['csv'],
                                      ('tumor',)))
  assert "'tumor'" in str(info.value)
  assert 'path, tumour, stained' in str(info.value)
  assert "Did you mean 'tumour'?" in str(info.value)
  # CheXpert: the names a label accepts (lower case), and the closest one.
  with pytest.raises(errors.DatasetFormatError) as info:
    sources.load_release(_data_config('folder', 'chexpert', data['chexpert'],
                                      ('cardiomegally',)))
  assert "Did you mean 'cardiomegaly'?" in str(info.value)
  assert 'pleural_effusion' in str(info.value)
  assert 'Cardiomegaly' not in str(info.value)
  with pytest.raises(ValueError, match="Did you mean 'folder'"):
    sources.load_release(_data_config('folders', 'celeba', data['celeba'],
                                      ('glasses',)))
  with pytest.raises(ValueError, match="Did you mean 'chexpert'"):
    sources.load_release(_data_config('folder', 'CheXpret', data['celeba'],
                                      ('glasses',)))


def test_unreadable_image_is_named_or_skipped_and_counted(tmp_path):
  fake_releases.make_csv(str(tmp_path), n=10, labels=('a',))
  config = _data_config('csv', 'broken', str(tmp_path), ('a',))
  release = sources.load_release(config)
  broken = release.items[sources.split_rows(release, 'train', config)[0][3]]
  with open(broken, 'wb') as f:
    f.write(b'not an image')
  source = pipeline.create_source(config, 'train')
  with pytest.raises(errors.UnreadableImageError) as info:
    _all(source)
  assert broken in str(info.value)
  config.skip_unreadable = True
  source = pipeline.create_source(config, 'train')
  elements = _all(source)
  assert source.skipped == 1 and len(elements) == len(source)
  assert [e['index'] for e in elements].count(4) == 2  # 3 replaced by 4.


def test_cli_reports_missing_data_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main',
       '--config=configs/celeba_smile.py', f'--workdir={tmp_path}',
       f'--config.data.data_dir={tmp_path}/celeba'],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=subprocess_env())
  assert proc.returncode == 1
  assert 'CelebA not found' in proc.stderr and 'Traceback' not in proc.stderr


# ---- paper configs train -----------------------------------------------------

def _load(name):
  """configs/NAME.py loaded by path, as config_flags does."""
  return config_files.load(os.path.join(ROOT, 'configs',
                                       f'{name}.py')).get_config()


def _paper_config(name, data_dir, **overrides):
  config = _load(name)
  for key, value in {**TINY, 'data.data_dir': data_dir, **overrides}.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def test_paper_configs_are_the_papers_model():
  c = _load('chexpert_cardiomegaly')
  assert (c.data.image_size, c.data.channels, c.batch_size) == (128, 1, 32)
  assert c.model.encoder_widths == c.model.feature_widths == (
      64, 128, 256, 512, 512)
  assert c.model.decoder_widths == (512, 512, 256, 128, 64)
  assert (c.model.latent_grid, c.model.num_codes, c.model.code_dim,
          c.model.num_features) == (8, 512, 16, 16)
  assert (c.learning_rate, c.objective.beta,
          c.data.supervision_rate) == (1e-4, 1e-4, 0.2)
  for name in PAPER_CONFIGS:
    config = _load(name)
    for key in ('model', 'objective', 'learning_rate', 'batch_size'):
      assert config[key] == c[key], (name, key)
    dataset, *labels = name.split('_')
    assert config.data.name == dataset
    assert config.data.labels == tuple(labels)
    assert config.data.channels == (3 if dataset == 'celeba' else 1)


# The train path is the same for every config of a dataset once its labels
# are read: these two cover a 'both' label (smile), two labels at once and
# grey images (celeba_glasses and chexpert_cardiomegaly train through the
# CLI below); the other paper configs are checked to read their labels.
TRAINED_IN_PROCESS = ('celeba_glasses_smile', 'chexpert_atelectasis')


@pytest.mark.parametrize('name', [n for n in PAPER_CONFIGS if n not in (
    TRAINED_IN_PROCESS + ('chexpert_cardiomegaly', 'celeba_glasses'))])
def test_paper_config_reads_its_labels(data, name):
  dataset = name.split('_')[0]
  config = _paper_config(name, data['celeba' if dataset == 'celeba'
                                    else 'chexpert_parent'])
  source = pipeline.create_source(config.data, 'train')
  example = source[0]
  assert example['image'].shape == tuple(pipeline.image_shape(config.data))
  assert example['label'].shape == (len(config.data.labels),)
  labels = np.stack([source[i]['label'] for i in range(len(source))])
  # Both values of every label occur in the fake release (label -1 would be
  # an unknown one; the paper configs' labels are all known here).
  for l in range(labels.shape[1]):
    assert set(np.unique(labels[:, l])) == {0, 1}, (name, l)


@pytest.mark.parametrize('name', TRAINED_IN_PROCESS)
def test_paper_config_trains_in_process(data, tmp_path, name):
  dataset = name.split('_')[0]
  config = _paper_config(name, data['celeba' if dataset == 'celeba'
                                    else 'chexpert_parent'])
  results = train.train_and_evaluate(config, str(tmp_path))
  final = _assert_trained_two_steps(tmp_path)
  for label in config.data.labels:  # Returned as logged.
    assert results[f'eval_accuracy_{label}'] == pytest.approx(
        final[f'eval_accuracy_{label}'])


def _assert_trained_two_steps(workdir) -> dict:
  """Steps 1 and 2 logged with a finite loss, then evaluated at step 2;
  returns that evaluation's record."""
  records = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  assert [r['step'] for r in records if 'loss' in r] == [1, 2]
  assert all(np.isfinite(r['loss']) for r in records if 'loss' in r)
  final = [r for r in records if 'eval_reconstruction_mse' in r][-1]
  assert final['step'] == 2
  return final


def _cli(config, workdir, *flags):
  tiny = [f'--config.{k}={v}'.replace(' ', '') for k, v in TINY.items()]
  return subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main', f'--config={config}',
       f'--workdir={workdir}', *tiny, *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=subprocess_env())


def test_cli_trains_chexpert_with_grain_workers(data, tmp_path):
  proc = _cli('configs/chexpert_cardiomegaly.py', tmp_path,
              f'--config.data.data_dir={data["chexpert"]}',
              '--config.data.worker_count=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_trained_two_steps(tmp_path)
  config = json.load(open(tmp_path / 'config.json'))
  assert config['data']['channels'] == 1


def test_cli_trains_celeba_from_tfds_from_another_directory(data, tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'cvqvae_jax.main',
       f'--config={ROOT}/configs/celeba_glasses.py', f'--workdir={tmp_path}',
       *[f'--config.{k}={v}'.replace(' ', '') for k, v in TINY.items()],
       '--config.data.source=tfds'],
      cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
      env=subprocess_env(CELEBA_DIR=data['tfds']))
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_trained_two_steps(tmp_path)


def test_csv_of_grey_images_of_mixed_sizes_trains(data, tmp_path):
  config = tiny_config(**{'data.source': 'csv', 'data.data_dir': data['csv'],
                          'data.name': 'mine',
                          'data.labels': ('tumour', 'stained')})
  results = train.train_and_evaluate(config, str(tmp_path))
  assert json.load(open(tmp_path / 'config.json'))['data']['channels'] == 0
  assert set(results) >= {'eval_accuracy_tumour', 'eval_accuracy_stained'}
  shape = train.build(config).image_shape
  assert shape == (16, 16, 1)
