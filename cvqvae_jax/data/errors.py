"""Errors that are the user's to fix (cvqvae_jax.main prints them without a
traceback): both derive from the types main.USER_ERRORS already lists."""


class DatasetNotFoundError(FileNotFoundError):
  """A dataset folder or file is missing: the message names the dataset, the
  path looked in, the expected layout and where to obtain the data."""


class DatasetFormatError(ValueError):
  """A dataset file is malformed, or a configured label column is absent."""


class UnreadableImageError(ValueError):
  """An image file cannot be opened or decoded; the message names it."""
