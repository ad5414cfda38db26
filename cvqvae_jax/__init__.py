"""cvqvae_jax: CVQVAE (Zou et al., Pattern Recognition Letters 2023) in JAX.

Importing the package has no side effects; see `objectives`, `models`,
`manipulate` and `train` for the pure functions, and `load(workdir)` for a
trained model (api.py, imported on first use).
"""

__version__ = '0.1.0'

_API = ('load', 'load_config', 'Trained')


def __getattr__(name):
  if name in _API:
    from cvqvae_jax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted([*globals(), *_API])
