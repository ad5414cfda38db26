"""CheXpert "cardiomegaly" against "No Finding": paper 3.2, Table 3, Fig. 5.

The paper's CVQVAE and hyperparameters (configs/paper.py). Set the data:
--config.data.data_dir=DIR or the environment variable CHEXPERT_DIR.
"""

import os
import sys

# Loaded by path (config_flags): make `configs` importable from any cwd.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from configs import paper  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  return paper.get_config('chexpert', ('cardiomegaly',))
