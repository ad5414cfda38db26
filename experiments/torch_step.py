r"""The project's train step against an equal PyTorch step, timed alternately.

The PyTorch model below is CVQVAE as cvqvae_jax builds it for a config: the
same residual blocks (pre-activation, no normalisation, (shortcut + h) /
sqrt 2), the same label tokens (one single-channel image per block and label
value, a scalar token for the decoder), C_phi with its dense head, the
codebook with Eq. 4's posterior q(z_ij = k) = softmax(-s ||z_e - e_k||) and
its Gumbel-max sample, VQ-VAE's copy straight-through, the same losses
(squared error, the entropy KL, the classification term, the codebook and
commitment terms against the nearest code) and Adam. Its parameter count is
checked against the JAX model's before anything is timed.

Not part of the tests (PyTorch is not a dependency). Run it with a Python
that has torch (`--torch_python`, default: this one) and one that has
cvqvae_jax (`--jax_python`); each measurement runs in its own process, the
two alternate `--rounds` times, and the medians are reported:

  python experiments/torch_step.py --config=configs/default.py \
      --torch_python=/path/to/venv-with-torch/bin/python
  python experiments/torch_step.py --config=configs/celeba_glasses.py \
      --config.batch_size=8 --steps=5 --torch_python=...

Prints one JSON line per measurement and a summary line with the ratio
(JAX step time / PyTorch step time; below 1: the project's step is faster).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- the PyTorch model (imported only in the torch child) ------------------

def _torch_model(cfg: dict):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  lrelu = lambda x: F.leaky_relu(x, 0.2)
  pool = lambda x: F.avg_pool2d(x, 2)
  up = lambda x: F.interpolate(x, scale_factor=2, mode='nearest')

  class ResBlock(nn.Module):

    def __init__(self, cin, cout, resample):
      super().__init__()
      self.resample = resample
      mid = cout if resample == 'up' else cin
      self.conv_1 = nn.Conv2d(cin, mid, 3, padding=1)
      self.conv_2 = nn.Conv2d(mid, cout, 3, padding=1)
      self.shortcut = (nn.Conv2d(cin, cout, 1, bias=False)
                       if cin != cout else None)

    def forward(self, x):
      h = lrelu(x)
      if self.resample == 'up':
        h = up(h)
      h = self.conv_1(h)
      if self.resample == 'down':
        h = pool(h)
      h = self.conv_2(lrelu(h))
      s = up(x) if self.resample == 'up' else x
      if self.shortcut is not None:
        s = self.shortcut(s)
      if self.resample == 'down':
        s = pool(s)
      return (s + h) / math.sqrt(2.0)

  class Tokens(nn.Module):
    """(L, 2, *shape) table; y (B, L, 2) -> (B, L, *shape)."""

    def __init__(self, num_labels, shape):
      super().__init__()
      self.table = nn.Parameter(torch.randn(num_labels, 2, *shape))

    def forward(self, y):
      return torch.einsum('blv,lv...->bl...', y, self.table)

  num_labels, kinds = cfg['num_labels'], cfg['kinds']
  size, ch = cfg['image_size'], cfg['channels']
  feat = [cfg['num_features'] * (2 if k == 'both' else 1) for k in kinds]

  class Encoder(nn.Module):

    def __init__(self):
      super().__init__()
      widths = cfg['encoder_widths']
      self.num_down = int(math.log2(size // cfg['latent_grid']))
      self.tokens, self.blocks = nn.ModuleList(), nn.ModuleList()
      cin, res = ch, size
      for i, w in enumerate(widths):
        self.tokens.append(Tokens(num_labels, (res, res)))
        down = i < self.num_down
        self.blocks.append(ResBlock(cin + num_labels, w,
                                    'down' if down else 'none'))
        cin, res = w, res // 2 if down else res
      self.out = nn.Conv2d(cin, cfg['code_dim'], 1)

    def forward(self, x, y):
      h = x
      for tok, block in zip(self.tokens, self.blocks):
        h = block(torch.cat([h, tok(y)], 1))
      return self.out(lrelu(h))

  class FeatureNet(nn.Module):

    def __init__(self):
      super().__init__()
      widths = cfg['feature_widths']
      num_down = int(math.log2(size // 4))
      self.blocks, cin = nn.ModuleList(), ch
      for i, w in enumerate(widths):
        self.blocks.append(ResBlock(cin, w, 'down' if i < num_down else
                                    'none'))
        cin = w
      self.head = nn.Linear(cin * 16, 2 * num_labels + sum(feat))

    def forward(self, x):
      h = x
      for block in self.blocks:
        h = block(h)
      out = self.head(lrelu(h).flatten(1))
      logits = out[:, :2 * num_labels].reshape(-1, num_labels, 2)
      return logits, torch.split(out[:, 2 * num_labels:], feat, dim=1)

  class Decoder(nn.Module):

    def __init__(self):
      super().__init__()
      widths = cfg['decoder_widths']
      num_up = int(math.log2(size // 4))
      z_size = cfg['latent_grid'] ** 2 * cfg['code_dim']
      self.scalar = Tokens(num_labels, ())
      self.dense = nn.Linear(z_size + num_labels + sum(feat), 16 * widths[0])
      self.w0 = widths[0]
      self.tokens, self.blocks = nn.ModuleList(), nn.ModuleList()
      cin, res = widths[0], 4
      for i, w in enumerate(widths):
        self.tokens.append(Tokens(num_labels, (res, res)))
        grow = i >= len(widths) - num_up
        self.blocks.append(ResBlock(cin + num_labels, w,
                                    'up' if grow else 'none'))
        cin, res = w, res * 2 if grow else res
      self.out = nn.Conv2d(cin, ch, 1)

    def forward(self, z_flat, y, f):
      h = self.dense(torch.cat([z_flat, self.scalar(y), f], 1))
      h = h.reshape(-1, self.w0, 4, 4)
      for tok, block in zip(self.tokens, self.blocks):
        h = block(torch.cat([h, tok(y)], 1))
      return torch.tanh(self.out(lrelu(h)))

  def gumbel_like(t):
    u = torch.rand_like(t).clamp_min(torch.finfo(t.dtype).tiny)
    return -torch.log(-torch.log(u))

  class CVQVAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.feature_net = FeatureNet()
      self.encoder = Encoder()
      self.embedding = nn.Parameter(torch.rand(cfg['num_codes'],
                                               cfg['code_dim']) * 0.02 - 0.01)
      self.decoder = Decoder()

    def loss(self, x, labels, labelled, y_temperature):
      logits_y, c = self.feature_net(x)
      relaxed = F.softmax((logits_y + gumbel_like(logits_y)) / y_temperature,
                          -1)
      known = F.one_hot(labels, 2).to(x.dtype)
      y = torch.where(labelled[..., None], known, relaxed)
      z_e = self.encoder(x, y).permute(0, 2, 3, 1)          # (B, N, N, D)
      e = self.embedding
      d2 = ((z_e ** 2).sum(-1, keepdim=True) - 2 * z_e @ e.T
            + (e ** 2).sum(-1))
      logits = -cfg['distance_scale'] * torch.sqrt(d2.clamp_min(1e-10))
      index = torch.argmax(logits + gumbel_like(logits), -1)
      z_q = z_e + (e[index] - z_e).detach()                 # copy gradient
      nearest = e[torch.argmax(logits, -1)]
      parts = []
      for l, kind in enumerate(kinds):
        y1 = y[:, l, 1:2]
        if kind == 'presence':
          parts.append(y1 * c[l])
        else:
          c0, c1 = torch.chunk(c[l], 2, 1)
          parts.append(torch.cat([(1 - y1) * c0, y1 * c1], 1))
      x_hat = self.decoder(z_q.flatten(1), y, torch.cat(parts, 1))
      log_p = F.log_softmax(logits, -1)
      kl = (math.log(cfg['num_codes'])
            + (log_p.exp() * log_p).sum(-1)).flatten(1).sum(1).mean()
      nll = -torch.gather(F.log_softmax(logits_y, -1), -1,
                          labels[..., None])[..., 0]
      mask = labelled.to(x.dtype)
      classification = ((nll * mask).sum(0) / mask.sum(0).clamp_min(1)).sum()
      recon = ((x - x_hat) ** 2).mean()
      codebook = ((z_e.detach() - nearest) ** 2).mean()
      commitment = ((z_e - nearest.detach()) ** 2).mean()
      return (recon + cfg['beta'] * kl + cfg['alpha'] * classification
              + codebook + cfg['commitment'] * commitment)

  return CVQVAE()


def _torch_child(cfg: dict, steps: int) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = _torch_model(cfg)
  opt = torch.optim.Adam(model.parameters(), lr=cfg['learning_rate'])
  rng = np.random.default_rng(0)
  b, s, c, n = cfg['batch_size'], cfg['image_size'], cfg['channels'], cfg[
      'num_labels']
  x = torch.tensor(rng.uniform(-1, 1, (b, c, s, s)), dtype=torch.float32)
  labels = torch.tensor(rng.integers(0, 2, (b, n)))
  labelled = torch.tensor(rng.random((b, n)) < cfg['supervision_rate'])

  def step():
    opt.zero_grad(set_to_none=True)
    loss = model.loss(x, labels, labelled, 1.0)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), float('inf'))  # norm
    opt.step()
    return float(loss)

  step()  # warm-up
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
  return {'framework': 'pytorch', 'torch': torch.__version__,
          'threads': torch.get_num_threads(),
          'num_params': sum(p.numel() for p in model.parameters()),
          'step_ms_median': 1000 * float(np.median(times))}


# ---- the driver ------------------------------------------------------------

def _model_fields(config) -> dict:
  """What the PyTorch child needs of the config (plain JSON)."""
  from cvqvae_jax import models  # pylint: disable=g-import-not-at-top
  from cvqvae_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  m, o = config.model, config.objective
  shape = pipeline.image_shape(config.data)
  return {
      'image_size': shape[0], 'channels': shape[-1],
      'num_labels': len(config.data.labels),
      'kinds': list(models.feature_kinds(config)),
      'encoder_widths': list(m.encoder_widths),
      'feature_widths': list(m.feature_widths),
      'decoder_widths': list(m.decoder_widths),
      'latent_grid': m.latent_grid, 'num_codes': m.num_codes,
      'code_dim': m.code_dim, 'num_features': m.num_features,
      'distance_scale': m.distance_scale, 'beta': o.beta, 'alpha': o.alpha,
      'commitment': o.commitment, 'learning_rate': config.learning_rate,
      'batch_size': config.batch_size,
      'supervision_rate': config.data.supervision_rate,
  }


def _jax_child(config_args: list[str], steps: int) -> dict:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from cvqvae_jax import benchmark, train  # pylint: disable=g-import-not-at-top
  del config_flags  # benchmark defines --config.
  # config_flags finds the --config.FIELD overrides in sys.argv, not in the
  # list given to FLAGS.
  sys.argv = ['torch_step'] + config_args
  flags.FLAGS(sys.argv)
  config = flags.FLAGS.config
  record = benchmark.run(config, steps)
  params = train.build(config).abstract_state.params
  record.update(framework='jax', jax=jax.__version__,
                num_params=sum(x.size for x in jax.tree.leaves(params)),
                fields=_model_fields(config))
  return record


def _run_child(python: str, role: str, payload: dict, log_dir: str) -> dict:
  """Runs this file as `role` in a fresh process; returns its JSON record."""
  out = os.path.join(log_dir, f'{role}_{time.monotonic_ns()}.log')
  with open(out, 'w') as f:
    proc = subprocess.run(
        [python, os.path.abspath(__file__), '--child', role,
         json.dumps(payload)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
        env={**os.environ, 'PYTHONPATH': ROOT}, timeout=3600)
  text = open(out).read()
  if proc.returncode:
    raise SystemExit(f'{role} child failed (log {out}):\n{text[-3000:]}')
  return json.loads(text.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  import statistics  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--torch_python', default=sys.executable)
  parser.add_argument('--jax_python', default=sys.executable)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=10)
  args, config_args = parser.parse_known_args(argv)
  log_dir = tempfile.mkdtemp(prefix='torch_step_')
  jax_times, torch_times, fields = [], [], None
  for r in range(args.rounds):
    rec = _run_child(args.jax_python, 'jax',
                     {'config_args': config_args, 'steps': args.steps},
                     log_dir)
    fields = rec.pop('fields')
    jax_times.append(rec['step_ms_median'])
    print(json.dumps({'round': r, **rec}), flush=True)
    trec = _run_child(args.torch_python, 'torch',
                      {'cfg': fields, 'steps': args.steps}, log_dir)
    if trec['num_params'] != rec['num_params']:
      raise SystemExit(f'Parameter counts differ: JAX {rec["num_params"]}, '
                       f'PyTorch {trec["num_params"]}: the models are not '
                       'equal.')
    torch_times.append(trec['step_ms_median'])
    print(json.dumps({'round': r, **trec}), flush=True)
  jax_ms, torch_ms = (statistics.median(jax_times),
                      statistics.median(torch_times))
  print(json.dumps({'summary': True, 'image_size': fields['image_size'],
                    'batch_size': fields['batch_size'],
                    'num_params': rec['num_params'],
                    'jax_step_ms_median': jax_ms,
                    'torch_step_ms_median': torch_ms,
                    'jax_over_torch': jax_ms / torch_ms}), flush=True)


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    role, payload = sys.argv[2], json.loads(sys.argv[3])
    if role == 'torch':
      print(json.dumps(_torch_child(payload['cfg'], payload['steps'])))
    else:
      print(json.dumps(_jax_child(payload['config_args'], payload['steps'])))
  else:
    main(sys.argv[1:])
