"""CelebA "smile" (Smiling, kind both): paper 3.2, Table 2, Figs. 3, 6-7.

The paper's CVQVAE and hyperparameters (configs/paper.py). Set the data:
--config.data.data_dir=DIR or the environment variable CELEBA_DIR.
"""

from cvqvae_jax import config_files

paper = config_files.sibling(__file__, 'paper')


def get_config():
  return paper.get_config('celeba', ('smile',))
