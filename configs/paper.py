"""The paper's CVQVAE on a real dataset: the shared builder of the
experiment configs (celeba_*.py, chexpert_*.py).

Every field keeps its name from configs/default.py; only values change. The
one field a user must set is data.data_dir, on the command line or through
the environment variable of the dataset (CELEBA_DIR, CHEXPERT_DIR):

  python -m cvqvae_jax.main --config=configs/celeba_glasses.py \
      --workdir=/tmp/glasses --config.data.data_dir=/data/celeba
"""

import os

from cvqvae_jax import config_files

default = config_files.sibling(__file__, 'default')

DATA_DIR_ENV = {'celeba': 'CELEBA_DIR', 'chexpert': 'CHEXPERT_DIR'}


def get_config(dataset: str, labels: tuple[str, ...]):
  """dataset: 'celeba' or 'chexpert'; labels: paper label names."""
  config = default.get_config()
  config.learning_rate = 1e-4           # paper 3: Adam, learning rate 1e-4
  config.batch_size = 32                # paper 3: batch size 32
  # Not given by the paper: ~20 epochs of CelebA's 162k training images.
  config.num_train_steps = 100_000
  config.log_every_steps = 500
  config.checkpoint_every_steps = 5_000
  config.eval_every_steps = 5_000       # learning curves (held-out numbers)
  config.sample_every_steps = 5_000     # samples/step_N.png and TensorBoard
  # Two-step training (paper 2.4): stage one (D) takes stage_one.share of
  # the steps, as in configs/default.py; C_phi and the tokens then stay
  # frozen for the first freeze_steps of stage two (not given by the paper).
  config.freeze_steps = 5_000

  data = config.data
  data.name = dataset
  data.source = 'folder'                # or 'tfds' (docs/data.md)
  data.data_dir = os.environ.get(DATA_DIR_ENV[dataset], '')
  data.image_size = 128                 # paper 3: images of size 128^2
  data.labels = tuple(labels)
  data.supervision_rate = 0.2           # paper 3: supervision rate 0.2
  data.test_fraction = 0.2              # paper 3: 80 % used for training
  data.split = 'seeded'
  data.read_threads = 4
  data.worker_count = 4                 # JPEG decoding in grain workers
  # CelebA: colour, centre square of the aligned 178x218 faces; CheXpert:
  # grey, whole radiograph resized (as CheXpert's own baselines do).
  data.channels = 3 if dataset == 'celeba' else 1
  data.crop = 'center' if dataset == 'celeba' else 'none'
  data.view = 'frontal'                 # CheXpert: frontal views only

  model = config.model
  model.name = 'cvqvae'
  model.encoder_widths = (64, 128, 256, 512, 512)   # E_phi, as JDVAE (2.1)
  model.feature_widths = (64, 128, 256, 512, 512)   # C_phi, as JDVAE (2.1)
  model.decoder_widths = (512, 512, 256, 128, 64)   # D_theta, as JDVAE (2.1)
  model.latent_grid = 8                 # paper 3: N_z = 8
  model.num_codes = 512                 # paper 3: K = 512
  model.code_dim = 16                   # paper 3: D = 16
  model.num_features = 16               # paper 3: N_c = 16
  config.objective.beta = 1e-4          # paper 3: beta = 1e-4

  ev = config.eval
  ev.classifier = 'resnet50'            # paper 3: independent ResNet-50
  ev.classifier_steps = 10_000          # not given by the paper (~4 epochs)
  ev.num_examples = 10_000              # test images for BCA (memory bound)
  ev.num_pairs = 500                    # swap pairs (paper 3)
  return config
