"""Config values out of range: one ValueError naming field, value and range,
before anything is compiled or read."""

import glob
import os
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from cvqvae_jax import cli
from cvqvae_jax import config_files
from cvqvae_jax import config_checks
from cvqvae_jax import train

from conftest import ROOT, tiny_config

BAD = [
    ('num_train_steps', -5), ('num_train_steps', 0),
    ('batch_size', 0),
    ('learning_rate', -1.0), ('learning_rate', 0.0),
    ('learning_rate', float('nan')), ('learning_rate', float('inf')),
    ('lr_schedule', 'linear'),
    ('warmup_steps', -1), ('warmup_steps', 4),  # tiny: 4 steps
    ('log_every_steps', 0), ('checkpoint_every_steps', 0),
    ('eval_every_steps', -1), ('sample_every_steps', -1),
    ('objective.beta_features', -1e-3),
    ('max_checkpoints_to_keep', 0),
    ('freeze_steps', -1),
    ('stage_one.share', 0.0), ('stage_one.share', 1.0),
    ('data.supervision_rate', 0.0), ('data.supervision_rate', 1.5),
    ('data.supervision_rate', -0.1),
    ('data.image_size', 24), ('data.image_size', 2),
    ('data.num_train', 0), ('data.test_fraction', 1.0),
    ('data.channels', 2), ('data.labels', ()),
    ('model.encoder_widths', (8, 0, 8, 8, 8)), ('model.decoder_widths', ()),
    ('model.latent_grid', 3), ('model.latent_grid', 32),
    ('model.num_codes', 0), ('model.code_dim', 0),
    ('model.num_features', 0), ('model.region_examples', 0),
    ('model.region_threshold', 0.0), ('model.region_threshold', 1.5),
    ('model.latent_size.cgvae', 0),
    ('model.distance_scale', 0.0), ('model.codebook_init_scale', -1.0),
    ('objective.beta', -1e-4), ('objective.alpha', -1.0),
    ('objective.commitment', float('nan')),
    ('objective.y_temperature_start', 0.0),
    ('objective.z_temperature_end', -0.5),
    ('objective.y_temperature_anneal_steps', -1),
    ('eval.num_pairs', 0), ('eval.batch_size', 0), ('eval.num_examples', 0),
    ('eval.curve_examples', 0), ('eval.classifier_steps', 0),
    ('eval.figure_examples', 0),
    # Swap terms without the swapped decodes would be silently 0.
    ('objective.swap_z_invariance', 0.1), ('objective.swap_z_cycle', 1.0),
]


@pytest.mark.parametrize('field,value', BAD)
def test_out_of_range_value_names_field_value_and_range(field, value):
  config = tiny_config(**{field: value})
  with pytest.raises(ValueError) as info:
    config_checks.validate(config)
  message = str(info.value)
  assert message.startswith(f'{field} must be '), message
  assert f'got {value!r}' in message
  assert '\n' not in message


@pytest.mark.parametrize('field,value', [
    ('num_train_steps', 1), ('eval_every_steps', 0), ('warmup_steps', 3),
    ('data.supervision_rate', 1.0), ('objective.beta', 0.0),
    ('model.latent_grid', 16), ('stage_one.model', ''),
    ('objective.y_temperature_anneal_steps', 0), ('data.channels', 3)])
def test_edges_of_the_ranges_are_accepted(field, value):
  config_checks.validate(tiny_config(**{field: value}))


def test_swap_terms_are_accepted_with_the_swapped_decodes():
  config_checks.validate(tiny_config(**{'model.swap_consistency': True,
                                        'objective.swap_z_invariance': 0.1}))


def test_share_is_free_without_a_stage_one():
  config_checks.validate(tiny_config(**{'stage_one.model': '',
                                        'stage_one.share': 0.0}))


def _config_flag(path: str):
  """The config of --config=PATH, parsed as main.py parses it."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config file',
                                  flag_values=values, lock_config=True)
  values(['main', f'--config={path}'])
  return values.config


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(
    ROOT, 'configs', '*.py'))))
def test_every_shipped_config_loads_from_any_cwd_and_validates(
    path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path_before = list(sys.path)
  if os.path.basename(path) == 'paper.py':  # The dataset configs' builder.
    config = config_files.load(path).get_config('celeba', ('glasses',))
  else:
    config = _config_flag(path)
  assert sys.path == path_before  # Loaded without touching sys.path.
  config_checks.validate(config)


def test_entry_points_check_before_reading_anything(tmp_path):
  """Nothing is written, compiled or read: the workdir stays absent."""
  workdir = str(tmp_path / 'never')
  for overrides in ({'num_train_steps': -5}, {'learning_rate': -1.0},
                    {'data.supervision_rate': 0.0}):
    with pytest.raises(ValueError, match=next(iter(overrides))):
      train.train_and_evaluate(tiny_config(**overrides), workdir)
    with pytest.raises(ValueError, match=next(iter(overrides))):
      cli.run_offline('evaluate', tiny_config(**overrides), workdir)
  assert not os.path.exists(workdir)
