r"""How visible each label's own factors are in the procedural benchmark's
images: the yardstick for c_own_factors_score (docs/results.md, "Third round").

For every feature factor of a label (glasses_color, glasses_shape, ...):

* effect: the mean squared difference, over held-out faces, between the face
  rendered with the factor at the bottom and at the top of its range (the
  label set to the value where the factor shows; for the colour, two random
  frame colours), and the number of pixels that change by more than 0.1. A
  model whose held-out reconstruction error is above a factor's effect does
  not have to draw that factor to reconstruct well.
* image probe: the leakage probe (cvqvae_jax.leakage.probe_scores) of the
  factor from the raw test images, on the examples where it shows: what the
  same probe reads from the pixels themselves.

  python experiments/factor_visibility.py [--image_size=32] [--num=2000]
"""

import argparse

import numpy as np

from cvqvae_jax import leakage
from cvqvae_jax.data import procedural as P

RANGES = {
    'glasses_shape': P.GLASSES_SHAPE_RANGE,
    'glasses_size': P.GLASSES_SIZE_RANGE,
    'glasses_thickness': P.GLASSES_THICKNESS_RANGE,
    'smile_curvature': P.SMILE_CURVATURE_RANGE,
    'smile_openness': P.SMILE_OPENNESS_RANGE,
    'neutral_width': P.NEUTRAL_WIDTH_RANGE,
    'neutral_tilt': P.NEUTRAL_TILT_RANGE,
    'head_scale': P.HEAD_SCALE_RANGE,
    'head_width': P.HEAD_WIDTH_RANGE,
}


def effect(factors, name: str, size: int) -> tuple[float, float]:
  """(mean squared difference, mean pixels changed by > 0.1) of moving
  factor `name` across its range on each face of `factors`."""
  label, shown = P.FACTOR_SHOWN_WHEN[name]
  mse, changed = [], []
  for i, f in enumerate(factors):
    a, b = dict(f), dict(f)
    a[label] = b[label] = np.float32(shown)
    if name == 'glasses_color':   # two frame colours of the benchmark
      b[name] = factors[(i + 1) % len(factors)][name]
    else:
      a[name], b[name] = map(np.float32, RANGES[name])
    d = P.render(a, size) - P.render(b, size)
    mse.append(np.mean(d ** 2))
    changed.append((np.abs(d).max(-1) > 0.1).sum())
  return float(np.mean(mse)), float(np.mean(changed))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--num', type=int, default=2000,
                      help='held-out faces for the probe')
  parser.add_argument('--num_effect', type=int, default=200,
                      help='held-out faces for the effects')
  args = parser.parse_args()
  labels = tuple(P.LABEL_FACTORS)
  faces = [P.sample_factors(0, i, 'test', active_labels=labels)
           for i in range(args.num)]
  stacked = P.stack_factors(faces)
  images = np.stack([P.render(f, args.image_size) for f in faces])
  everyone = np.ones(args.num, bool)
  print('| factor | effect (MSE, bottom to top of range) | pixels changed | '
        'image probe |')
  print('|---|---|---|---|')
  for label in labels:
    names = P.LABEL_FACTORS[label]
    probe = leakage.probe_scores(
        images.reshape(args.num, -1),
        {n: leakage._factor_target(stacked, n, everyone) for n in names})  # pylint: disable=protected-access
    for name in names:
      mse, changed = effect(faces[:args.num_effect], name, args.image_size)
      score = '-' if probe[name] is None else f'{probe[name]:.3f}'
      print(f'| {name} | {mse:.4f} | {changed:.1f} | {score} |')


if __name__ == '__main__':
  main()
