"""CelebA "makeup" (Heavy_Makeup, presence): paper 3.2, Fig. 4.

The paper's CVQVAE and hyperparameters (configs/paper.py). Set the data:
--config.data.data_dir=DIR or the environment variable CELEBA_DIR.
"""

from cvqvae_jax import config_files

paper = config_files.sibling(__file__, 'paper')


def get_config():
  return paper.get_config('celeba', ('makeup',))
