"""The paper's CVQVAE (approach E, trained in two steps) on the procedural
face benchmark, sized for a 2-core CPU.

This is the embedded default: it needs no dataset. It trains the paper's
recipe: every extension beyond the paper (docs/model.md, "Extensions") is
off, since none has yet made c learn its label's features (docs/results.md).
The architecture is the paper's (section 2.1) at 32 px with narrower blocks,
so that the README's main job runs in under 8 minutes on a 2-core CPU
(README.md gives the measured time): stage one (CGVAE, approach D) for 30 %
of the steps, then CVQVAE from its C_phi and tokens (docs/model.md).
The paper-size model (128 px, widths 64..512, N_z 8, K 512, D 16) is in the
dataset configs.

  python -m cvqvae_jax.main --config=configs/default.py --workdir=/tmp/cvqvae

A recipe name after the file turns on a measured set of extensions on top
(docs/results.md, "Third round"):

  python -m cvqvae_jax.main --config=configs/default.py:hsic_film --workdir=/tmp/hf

'hsic_film': f(y, c) as FiLM of every decoder block, with the HSIC
penalties of z against y, of c against z and of c against the other labels,
each at weight 0.1. On the README job it swaps better than the paper's
recipe on every classifier and ground-truth swap number measured, and
reconstructs about 20 % worse; c still does not learn its label's look.

'masked': 'hsic_film', with stage two started from all of stage one's E_phi
and D_theta (stage_one.warm_start) and z masked where a label acts in half
of the training examples (model.region_masking = 0.5), so that the decoder
must draw the label there from y and f(y, c) (docs/results.md, "Eighth
round"). The recipe that swaps best on every label measured, the shape
labels included; c still does not learn its label's look.

'hidden': 'hsic_film', with stage_one.warm_start, the labels' region hidden
from E_phi (model.encoder_masking; the whole band of the frames and the
mouth: model.region_threshold = 0.2 from model.region_examples = 2048) and
the reconstruction weighted there (objective.region_reconstruction = 1)
(docs/results.md, "Tenth round" and "Eleventh round"): z knows nothing of
the frames, the glasses swap inside their region is under a tenth of doing
nothing when they are removed and about a quarter when they are added, and
c visibly darkens the frames; c's probe score of its factors is still low,
and big_head swaps worse with it (measured on two seeds).

'chroma': 'hidden', with the labels' colour priced apart from their
brightness inside their region (objective.region_chroma = 20;
docs/results.md, "Twelfth round"): the only recipe whose c knows its
label's colour (glasses: probe score 0.78-0.85, above the raw pixels' 0.72)
and little else (no other factor above 0.17), so that fake+ draws the
donor's frame colour and scaling c from 0 to 2 turns grey frames into the
example's own colour. It costs reconstruction (0.0276-0.0434 on two seeds
against 0.0199 at 2500 steps, and worse whole-image swaps) and wants twice
the steps: at --config.num_train_steps=5000 it reconstructs at
0.0194-0.0248 and its region swaps match 'hidden''s at 2500 (glasses
0.21-0.25 / 0.11-0.12 of doing nothing, SR 0.99 / 0.95-0.99), and its
whole-image swaps on one of two seeds. The smile's c still carries the
frames.

'own': 'chroma', with each label's c computed from the image with the other
labels' regions hidden (model.feature_masking), the learning rate warmed up
over 250 steps to 2e-3, then on a cosine decay, and the paper's K = 512
codes, to be run at 5000 steps (docs/results.md, "Thirteenth round" to
"Fifteenth round"): no c knows anything but its own label (the largest other
factor in either label's c 0.04-0.10 on two seeds, against the smile's
0.60-0.66 knowledge of the glasses with 'chroma'), the glasses' c keeps the
frames' colour (0.85-0.90) and thickness (0.33-0.34), it reconstructs at
0.0167-0.0176, swaps the glasses at 0.55-0.59 / 0.44-0.46 of doing nothing
(0.21-0.22 / 0.10-0.11 inside the frames) and reaches SR 0.98 / 0.98 on the
glasses, 0.96-0.99 / 0.98-0.99 on the smile; its c is still blind to the
frames' shape and size and to the smile's curvature. At the README's 2500
steps it is not trained (measured with K = 128: reconstruction 0.025, the
smile's SR(+) 0.80).
"""

import ml_collections

# Recipes beyond the paper: name -> {config path: value}. '' is the paper's.
RECIPES = {
    '': {},
    'hsic_film': {'model.feature_film': True, 'objective.z_hsic': 0.1,
                  'objective.c_hsic': 0.1, 'objective.c_labels_hsic': 0.1},
}
RECIPES['masked'] = {**RECIPES['hsic_film'], 'stage_one.warm_start': True,
                     'model.region_masking': 0.5}
RECIPES['hidden'] = {**RECIPES['hsic_film'], 'stage_one.warm_start': True,
                     'model.encoder_masking': True,
                     'model.region_threshold': 0.2,
                     'model.region_examples': 2048,
                     'objective.region_reconstruction': 1.0}
RECIPES['chroma'] = {**RECIPES['hidden'], 'objective.region_chroma': 20.0}
RECIPES['own'] = {**RECIPES['chroma'], 'model.feature_masking': True,
                  'lr_schedule': 'cosine', 'learning_rate': 2e-3,
                  'warmup_steps': 250, 'model.num_codes': 512}


def get_config(recipe: str = '') -> ml_collections.ConfigDict:
  """The benchmark config; `recipe` (the text after ':' in --config) one of
  RECIPES."""
  if recipe not in RECIPES:
    raise ValueError(f'Unknown recipe {recipe!r} in --config=configs/'
                     f'default.py:{recipe}; known: {sorted(RECIPES)} '
                     "('' is the paper's).")
  config = ml_collections.ConfigDict()
  config.seed = 0                       # parameters and the step RNG
  config.batch_size = 32                # paper 3: batch 32
  config.num_train_steps = 2500
  config.learning_rate = 1e-3           # paper 3: 1e-4; see docs/results.md
  # 'constant' (paper 3: Adam at a fixed rate) or 'cosine': linear warm-up
  # over warmup_steps, then cosine decay to 0 at the run's last step.
  config.lr_schedule = 'constant'
  config.warmup_steps = 0
  config.log_every_steps = 100          # metrics.jsonl, TensorBoard, progress
  config.checkpoint_every_steps = 500   # orbax checkpoint interval
  # Held-out numbers every N steps on eval.curve_examples test images
  # (learning curves in metrics.jsonl; 0: only at the end).
  config.eval_every_steps = 500
  # Reconstructions and swaps of held-out images every N steps, in
  # WORKDIR/samples/step_N.png and TensorBoard (0: only samples.png at the end).
  config.sample_every_steps = 500
  config.max_checkpoints_to_keep = 2
  # jax.profiler trace of training steps (first, last) into WORKDIR/profile/
  # (TensorBoard's profile plugin, Perfetto); (0, 0): off.
  config.profile_steps = (0, 0)
  # Two-step training (paper 2.4): CVQVAE (approach E) and CGVAE2 (F) start
  # from a stage one (D, a CGVAE) that learns C_phi and the tokens; they are
  # restored into the model, frozen for its first freeze_steps steps. Both
  # stages run from one command in one workdir (docs/model.md).
  config.stage_one = ml_collections.ConfigDict()
  config.stage_one.model = 'cgvae'      # '' trains model.name in one stage
  config.stage_one.share = 0.3          # part of num_train_steps for stage one
  config.freeze_steps = 300             # not given by the paper
  # Beyond the paper (docs/model.md, "Extensions"): stage two also starts
  # from stage one's E_phi and D_theta wherever path and shape agree.
  config.stage_one.warm_start = False
  # Instead of a stage one of its own: the workdir of one trained elsewhere.
  config.init_from = ''
  # Device mesh (README.md, "Scale"): axis sizes (-1 = all remaining devices) and names.
  # The batch is split over every axis; the state is replicated.
  config.mesh_shape = (-1,)
  config.mesh_axes = ('data',)
  # Computation dtype of the encoder, C_phi and the decoder: 'float32', or
  # 'bfloat16' for mixed precision (parameters, optimizer state, losses,
  # softmax/KL and codebook distances stay float32; docs/performance.md).
  config.dtype = 'float32'

  config.data = data = ml_collections.ConfigDict()
  data.name = 'procedural'
  data.source = 'procedural'
  data.data_dir = ''                    # unused by the procedural benchmark
  data.image_size = 32                  # the paper uses 128
  data.labels = ('glasses', 'smile')    # several labels: paper 3.4
  data.supervision_rate = 0.2           # paper 3: 20 % of examples labelled
  data.seed = 0                         # generator, split and label mask
  data.num_train = 50_000
  data.num_test = 2_000
  data.read_threads = 2                 # grain read threads (render/decode)
  data.prefetch_buffer = 8              # batches read ahead
  data.worker_count = 0                 # grain worker processes (0: none)
  # Real data (data.source 'folder', 'csv' or 'tfds'; docs/data.md).
  data.channels = 0                     # 1 grey, 3 colour, 0 the dataset's
  data.crop = 'center'                  # 'center' square crop, or 'none'
  data.split = 'seeded'                 # 'seeded' 80/20, or 'release'
  data.test_fraction = 0.2              # paper 3: 80 % used for training
  data.view = 'frontal'                 # CheXpert views: 'frontal' or 'all'
  data.skip_unreadable = False          # skip (and count) unreadable images

  config.model = model = ml_collections.ConfigDict()
  # Paper 2.4 / Table 1: cvqvae is E with a stage one (stage_one.model or
  # init_from), C without; vq_argmin (A), vq_entropy (B), cgvae (D), cgvae2
  # (F with a stage one); the baselines of Tables 2-3: m2, ccvae, jdvae
  # (one stage each).
  model.name = 'cvqvae'
  model.encoder_widths = (16, 32, 64, 64, 64)   # E_phi, 5 blocks (2.1)
  model.feature_widths = (16, 32, 64, 64, 64)   # C_phi, 5 blocks + dense
  model.decoder_widths = (64, 64, 64, 32, 16)    # D_theta, 5 blocks
  model.latent_grid = 8                 # N_z (paper 3: 8)
  model.num_codes = 128                 # K (paper 3: 512)
  model.code_dim = 16                   # D (paper 3: 16)
  model.num_features = 4                # N_c (paper 3: 16)
  # f(y, c) per label (2.1): 'presence' (c only when y = 1) or 'both'.
  model.feature_combination = ml_collections.ConfigDict(
      {'glasses': 'presence', 'smile': 'both', 'beard': 'presence',
       'makeup': 'presence'})
  model.default_feature_combination = 'presence'
  # Gradient path through the z sample (docs/model.md): 'copy' (VQ-VAE
  # straight-through, paper 2.3) or 'gumbel' (through the soft weights).
  model.straight_through = 'copy'
  # Codebook init (docs/model.md): 'normal' N(0, s^2 I), VQ-VAE's 'uniform'
  # (+-1/K), 'data' (the encoder's outputs on the first batch), or 'auto':
  # uniform for the argmin posterior (A), data for Eq. 4.
  model.codebook_init = 'auto'
  model.codebook_init_scale = 1.0       # std of the 'normal' init
  # Codes the codebook/commitment terms use: 'sample' (z_q, paper 2.3) or
  # 'nearest' (VQ-VAE's argmin, [18]).
  model.vq_target = 'nearest'
  # s in q(z_ij = k | x, y) = softmax_k(-s ||z_e,ij - e_k||): 1 / temperature
  # of Eq. 4 (the paper writes s = 1; docs/model.md says why 64).
  model.distance_scale = 64.0
  # S_z of the Gaussian-latent variants (paper 2.4): CGVAE (D) a small 100,
  # CGVAE2 (F) 1024 = N_z * N_z * D, the size of CVQVAE's z_q.
  # The baselines M2, CCVAE, JDVAE (Tables 2-3, docs/model.md): 100, as in
  # the paper's comparison (for CCVAE, the size of its style latent z_s).
  model.latent_size = ml_collections.ConfigDict({
      'cgvae': 100, 'cgvae2': 1024, 'm2': 100, 'ccvae': 100, 'jdvae': 100})

  # Beyond the paper (docs/model.md, "Extensions"; off in the paper's
  # configs): an MLP of this width fitted to predict y from z, and the
  # encoder trained (weight objective.z_invariance) to leave it uncertain.
  model.z_adversary_width = 0
  # Swapped decodes re-encoded in every train pass, for the swap-consistency
  # weights objective.swap_* below (docs/model.md, "Extensions").
  model.swap_consistency = False
  # f(y, c) modulates every decoder block (FiLM), not only its first dense
  # layer (docs/model.md, "Extensions").
  model.feature_film = False
  # Probability that a training example's decoder tokens of a label carry
  # nothing of it (the mean of its two tokens): the decoder must then draw
  # the label from f(y, c) (docs/model.md, "Extensions").
  model.token_dropout = 0.0
  # Train passes also decode with each label's c replaced by its batch mean,
  # for objective.c_locality (docs/model.md, "Extensions").
  model.feature_locality = False
  # Probability that a training example's z is set to 0 where a label acts
  # (the region read from the batch): the decoder must then draw the label's
  # look from f(y, c) (categorical z only; docs/model.md, "Extensions").
  model.region_masking = 0.0
  # E_phi reads the image with the pixels where the labels act (found from
  # labelled training examples before the first step) set to 0, in training
  # and at test: z cannot see the label's look (docs/model.md, "Extensions").
  model.encoder_masking = False
  # Each label's q(y|x) and c are C_phi's of the image with the other
  # labels' regions (found as that one, label by label) set to 0: a label's
  # c cannot see what another label draws (docs/model.md, "Extensions").
  model.feature_masking = False
  # Training examples read (before the first step) to find those regions, and
  # the share of a label's largest difference (mean image with the label
  # against without, per 4 x 4 patch) at which a patch is in it.
  model.region_examples = 512
  model.region_threshold = 0.5

  config.objective = objective = ml_collections.ConfigDict()
  objective.beta = 1e-4                 # KL weight (paper 3)
  objective.alpha = 1.0                 # classification weight (paper 2.3)
  objective.commitment = 0.25           # commitment weight (paper 2.3, [18])
  # JDVAE's second KL weight, of KL(q(c|x) || p(c|y)) (docs/model.md).
  objective.beta_features = 1e-3
  # Weight of KL(U || q_A(y|z)), the label adversary's uncertainty
  # (model.z_adversary_width > 0; docs/model.md, "Extensions").
  objective.z_invariance = 0.0
  # Swap consistency (model.swap_consistency): E_phi of a swapped decode
  # gives back the base's z, C_phi the donor's f(y, c) and label.
  objective.swap_z_cycle = 0.0
  objective.swap_c_cycle = 0.0
  objective.swap_classification = 0.0
  # ... and E_phi (trained) of a swapped decode (held fixed) gives back the
  # base's z: z leaves out the label and features that the swap changed.
  objective.swap_z_invariance = 0.0
  # Weight of the share of what c changes in the image that lies outside
  # the region where its label acts (model.feature_locality).
  objective.c_locality = 0.0
  # Weight of the squared error inside the regions where the labels act
  # (read from the batch), on top of the whole image's (docs/model.md,
  # "Extensions").
  objective.region_reconstruction = 0.0
  # ... and of the chroma there (the channels minus their mean): the
  # labels' colour, which the whole image's error barely weighs.
  objective.region_chroma = 0.0
  # Weight of the MMD between the z of y = 1 and y = 0 in each batch: a
  # kernel penalty that removes y from z (docs/model.md, "Extensions").
  objective.z_mmd = 0.0
  # Weight of the normalised HSIC between E_phi's z and y in each batch
  # (in [0, 1]; docs/model.md, "Extensions").
  objective.z_hsic = 0.0
  # ... and between each label's c and z (held fixed): c leaves out what z
  # knows (docs/model.md, "Extensions").
  objective.c_hsic = 0.0
  # ... and between each label's c and the other labels' y.
  objective.c_labels_hsic = 0.0
  # ... and between z at each latent position and each label's f(y, c)
  # (held fixed): E_phi leaves the label's look to c.
  objective.z_features_hsic = 0.0
  # Gumbel-softmax temperatures (not given by the paper; docs/model.md):
  # geometric annealing from *_start to *_end over *_anneal_steps steps.
  objective.y_temperature_start = 1.0
  objective.y_temperature_end = 0.5
  objective.y_temperature_anneal_steps = 5000
  objective.z_temperature_start = 1.0   # used by straight_through='gumbel'
  objective.z_temperature_end = 0.5
  objective.z_temperature_anneal_steps = 5000

  config.eval = ml_collections.ConfigDict()
  config.eval.num_pairs = 500           # swap pairs (paper 3)
  config.eval.batch_size = 100
  config.eval.num_examples = 2_000      # held-out examples for accuracy
  config.eval.curve_examples = 500      # ... for the curves during training
  # Independent classifier (paper 3: ResNet-50), one per label, trained fully
  # supervised and cached in WORKDIR/classifier/ (docs/evaluation.md).
  # 'resnet18'|'resnet34'|'resnet50' (ImageNet) or 'cifar_resnet8'|
  # 'cifar_resnet20' (3x3 stem, for small images such as these 32 px).
  config.eval.classifier = 'cifar_resnet8'
  config.eval.classifier_steps = 400
  config.eval.classifier_batch_size = 64
  config.eval.classifier_learning_rate = 3e-3
  # The evaluation's own seed: the independent classifiers' initialisation
  # and data order, the swap pairs and the probes' halves. Not config.seed,
  # so that runs of several seeds are measured alike.
  config.eval.seed = 0
  # FID (paper 3): the pytorch-fid InceptionV3 weights converted to .npz
  # (docs/evaluation.md); '' reports fid as null.
  config.eval.fid_weights = ''
  config.eval.fid_batch_size = 50
  config.eval.figure_examples = 6       # examples per figure (--mode=figures)
  config.update_from_flattened_dict(RECIPES[recipe])
  return config
