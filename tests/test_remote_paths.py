"""Workdirs and data on a non-local store (etils.epath), with a stand-in
gs:// bucket: an fsspec file system that maps gs://BUCKET/... to a local
folder, so that os.path or open() on such a path would fail or create a
local folder named 'gs:'.

orbax writes checkpoints on gs:// through google-cloud-storage and
TensorStore's own GCS driver, which an fsspec stand-in cannot serve: here
the checkpoints (and the classifier cache, also orbax) stay in a local
folder, and everything else the run writes and reads goes to the bucket.
"""

import json
import os
import sys

import fsspec  # pylint: disable=unused-import
from etils.epath import backend as epath_backend
from fsspec.implementations.local import LocalFileSystem
import numpy as np
import pytest

import cvqvae_jax
from cvqvae_jax import checkpointing
from cvqvae_jax import classifier
from cvqvae_jax import cli
from cvqvae_jax import train
from cvqvae_jax.data import pipeline

import fake_releases
from conftest import tiny_config


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """gs://... served from tmp_path/bucket_root; returns that folder."""
  root = tmp_path / 'bucket_root'
  root.mkdir()

  class Bucket(LocalFileSystem):
    protocol = ('gs', 'gcs')

    def __init__(self, *args, finalize_on_close=None, **kwargs):
      del finalize_on_close  # etils asks gcsfs for it
      super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
      path = str(path)
      for prefix in ('gs://', 'gcs://'):
        if path.startswith(prefix):
          path = f'{root}/{path[len(prefix):]}'
      return super()._strip_protocol(path)

  registry = sys.modules['fsspec.registry']._registry  # pylint: disable=protected-access
  for name in ('gs', 'gcs'):
    monkeypatch.setitem(registry, name, Bucket)
  monkeypatch.chdir(tmp_path)  # where os.path would create 'gs:'
  clear = type(epath_backend.fsspec_backend)._get_filesystem.cache_clear  # pylint: disable=protected-access
  clear()  # etils caches one file system per protocol
  yield root
  clear()


def test_workdir_on_a_bucket_trains_resumes_and_evaluates(bucket, tmp_path,
                                                           monkeypatch):
  local = tmp_path / 'orbax'
  monkeypatch.setattr(checkpointing, 'checkpoint_dir',
                      lambda workdir: str(local / 'checkpoints'))
  monkeypatch.setattr(classifier, 'cache_dir',
                      lambda workdir, d: str(local / 'classifier' /
                                             d['label']))
  workdir = 'gs://runs/cvqvae'
  config = tiny_config(**{'stage_one.model': '', 'sample_every_steps': 2})
  train.train_and_evaluate(config, workdir)
  resumed = tiny_config(**{'stage_one.model': '', 'sample_every_steps': 2,
                           'num_train_steps': 6})
  results = train.train_and_evaluate(resumed, workdir)
  run = bucket / 'runs' / 'cvqvae'
  with open(run / 'metrics.jsonl') as f:
    records = [json.loads(l) for l in f]
  # Every logged step once, across the resume; the last one with the
  # held-out numbers.
  assert [r['step'] for r in records if 'loss' in r] == [2, 4, 6]
  assert records[-1]['eval_reconstruction_mse'] == pytest.approx(
      results['eval_reconstruction_mse'])
  assert json.load(open(run / 'config.json'))['num_train_steps'] == 6
  assert sorted(os.listdir(run / 'samples')) == [
      'step_2.png', 'step_4.png', 'step_6.png']
  assert os.path.getsize(run / 'samples.png') > 1000
  assert [f for f in os.listdir(run) if f.startswith('events.out')]
  assert sorted(os.listdir(local / 'checkpoints')) == ['4', '6']
  assert not (tmp_path / 'gs:').exists()
  assert cvqvae_jax.load_config(workdir).num_train_steps == 6

  evaluated = cli.run_offline('evaluate', resumed, workdir)
  assert json.load(open(run / 'eval' / 'results.json')) == evaluated
  assert evaluated['step'] == 6
  assert not (tmp_path / 'gs:').exists()


def test_data_in_a_bucket(bucket):
  fake_releases.make_csv(str(bucket / 'data' / 'mine'))
  config = tiny_config(**{'data.source': 'csv', 'data.name': 'mine',
                          'data.data_dir': 'gs://data/mine',
                          'data.labels': ('tumour', 'stained')}).data
  source = pipeline.create_source(config, 'test')
  element = source[0]
  assert element['image'].shape == (16, 16, 1)
  assert 0 < len(source) <= 8  # 20 % of 40, less rows with a blank label
  assert repr(source).startswith('ImageSource(CSV dataset gs://data/mine/')
  fake_releases.make_celeba_csv(str(bucket / 'data' / 'celeba'), n=20)
  celeba = tiny_config(**{'data.source': 'folder', 'data.name': 'celeba',
                          'data.data_dir': 'gs://data/celeba',
                          'data.labels': ('glasses',)}).data
  x = pipeline.create_source(celeba, 'train')[0]['image']
  assert x.shape == (16, 16, 3) and np.isfinite(x).all()
  missing = tiny_config(**{'data.source': 'folder', 'data.name': 'celeba',
                           'data.data_dir': 'gs://data/nothing',
                           'data.labels': ('glasses',)}).data
  with pytest.raises(FileNotFoundError, match='gs://data/nothing'):
    pipeline.create_source(missing, 'train')
