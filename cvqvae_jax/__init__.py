"""cvqvae_jax: CVQVAE (Zou et al., Pattern Recognition Letters 2023) in JAX.

Importing the package has no side effects; see `objectives`, `models`,
`manipulate` and `train` for the pure functions.
"""

__version__ = '0.1.0'
