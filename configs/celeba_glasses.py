"""CelebA "glasses" (Eyeglasses, presence): paper 3, Tables 1-2, Figs. 2-3, 6-7.

The paper's CVQVAE and hyperparameters (configs/paper.py). Set the data:
--config.data.data_dir=DIR or the environment variable CELEBA_DIR.
"""

import os
import sys

# Loaded by path (config_flags): make `configs` importable from any cwd.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from configs import paper  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  return paper.get_config('celeba', ('glasses',))
