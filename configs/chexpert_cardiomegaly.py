"""CheXpert "cardiomegaly" against "No Finding": paper 3.2, Table 3, Fig. 5.

The paper's CVQVAE and hyperparameters (configs/paper.py). Set the data:
--config.data.data_dir=DIR or the environment variable CHEXPERT_DIR.
"""

from cvqvae_jax import config_files

paper = config_files.sibling(__file__, 'paper')


def get_config():
  return paper.get_config('chexpert', ('cardiomegaly',))
