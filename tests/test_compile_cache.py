"""The persistent compilation cache: on by default, movable, off with 0."""

import jax
import pytest

from cvqvae_jax import compile_cache


@pytest.fixture
def no_cache_set(monkeypatch):
  """As in a user's process: no cache folder set for JAX (conftest sets one
  for the tests); restored afterwards."""
  before = jax.config.jax_compilation_cache_dir
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  jax.config.update('jax_compilation_cache_dir', None)
  yield
  jax.config.update('jax_compilation_cache_dir', before)


def test_on_by_default_in_the_user_cache_folder(no_cache_set, monkeypatch,
                                                tmp_path):
  monkeypatch.delenv(compile_cache.CACHE_ENV, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  folder = compile_cache.enable()
  assert folder == str(tmp_path / 'cvqvae_jax' / 'xla')
  assert jax.config.jax_compilation_cache_dir == folder
  assert (tmp_path / 'cvqvae_jax' / 'xla').is_dir()


def test_moved_or_turned_off_by_the_environment(no_cache_set, monkeypatch,
                                                tmp_path):
  monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / 'mine'))
  assert compile_cache.enable() == str(tmp_path / 'mine')
  jax.config.update('jax_compilation_cache_dir', None)
  for off in ('0', 'off'):
    monkeypatch.setenv(compile_cache.CACHE_ENV, off)
    assert compile_cache.enable() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_folder_set_for_jax_itself_is_kept(monkeypatch, tmp_path):
  monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / 'ours'))
  before = jax.config.jax_compilation_cache_dir
  assert before  # conftest's
  assert compile_cache.enable() is None
  assert jax.config.jax_compilation_cache_dir == before
  assert not (tmp_path / 'ours').exists()
