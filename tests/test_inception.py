"""The Flax FID InceptionV3 against pytorch-fid's own model, same random
weights, through the .pth -> .npz converter. Needs the `fid-test` extra
(torch, torchvision, pytorch-fid); skipped without torch."""

import importlib.util
import sys
import types

import numpy as np
import pytest

from cvqvae_jax import inception

torch = pytest.importorskip('torch')


def _pytorch_fid_inception(monkeypatch):
  """pytorch_fid.inception, imported even where torchvision's compiled ops
  do not load beside a CPU torch (PyPI's torchvision is built against the
  CUDA one): then torchvision's package __init__, which registers those
  ops, is skipped and only its pure-Python model modules are imported."""
  pytest.importorskip('pytorch_fid')
  try:
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
  except (ImportError, RuntimeError):
    spec = importlib.util.find_spec('torchvision')
    if spec is None:
      pytest.skip('torchvision is not installed')
    for name in [m for m in sys.modules if m.startswith('torchvision')]:
      monkeypatch.delitem(sys.modules, name)
    package = types.ModuleType('torchvision')
    package.__path__ = list(spec.submodule_search_locations)
    package.__version__ = '0.28.0'
    monkeypatch.setitem(sys.modules, 'torchvision', package)
    import torchvision.models.inception  # pylint: disable=g-import-not-at-top,redefined-outer-name
    package.models = sys.modules['torchvision.models']
  from pytorch_fid import inception as fid  # pylint: disable=g-import-not-at-top
  return fid


def _randomise(net):
  """He-scaled convs and non-trivial batch-norm statistics, so that every
  parameter and buffer matters and activations keep an O(1) scale."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                       * (2.0 / fan_in) ** 0.5)
      elif isinstance(m, torch.nn.BatchNorm2d):
        shape = m.weight.shape
        m.weight.copy_(0.5 + torch.rand(shape, generator=gen))
        m.bias.copy_(0.1 * torch.randn(shape, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(shape, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(shape, generator=gen))


def test_flax_inception_matches_pytorch_fid(monkeypatch, tmp_path):
  fid = _pytorch_fid_inception(monkeypatch)
  tv_inception = sys.modules['torchvision.models.inception']
  # No download: fid_inception_v3 would fetch the release weights.
  monkeypatch.setattr(fid, 'load_state_dict_from_url', lambda *a, **k: {})
  monkeypatch.setattr(tv_inception.Inception3, 'load_state_dict',
                      lambda self, state, *a, **k: None)
  net = fid.fid_inception_v3()
  _randomise(net)
  monkeypatch.setattr(fid, 'fid_inception_v3', lambda: net)
  reference = fid.InceptionV3([fid.InceptionV3.DEFAULT_BLOCK_INDEX],
                              resize_input=True, normalize_input=True).eval()

  pth, npz = str(tmp_path / 'w.pth'), str(tmp_path / 'w.npz')
  torch.save(net.state_dict(), pth)
  inception.convert_pth(pth, npz)
  variables = inception.load_variables(npz)

  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)  # Our range.
  with torch.no_grad():
    want = reference(torch.from_numpy((x + 1) / 2).permute(0, 3, 1, 2))[0]
  want = want.reshape(2, 2048).numpy()
  got = np.asarray(inception.FIDInceptionV3().apply(variables, x))
  max_diff = float(np.max(np.abs(got - want)))
  print(f'max |flax - pytorch-fid| = {max_diff:.3g} '
        f'(feature scale {np.abs(want).mean():.3g})')
  assert got.shape == (2, 2048)
  assert np.abs(want).mean() > 0.05  # Activations did not vanish.
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(
      want).max())
