"""Errors that are the user's to fix (cvqvae_jax.main prints them without a
traceback): both derive from the types cli.USER_ERRORS already lists."""

import difflib


def did_you_mean(name: str, choices) -> str:
  """' Did you mean 'x'?' for the closest of `choices` (case-insensitive),
  or ''."""
  choices = [str(c) for c in choices]
  by_lower = {c.lower(): c for c in choices}
  close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1,
                                    cutoff=0.6)
  return f' Did you mean {by_lower[close[0]]!r}?' if close else ''


class DatasetNotFoundError(FileNotFoundError):
  """A dataset folder or file is missing: the message names the dataset, the
  path looked in, the expected layout and where to obtain the data."""


class DatasetFormatError(ValueError):
  """A dataset file is malformed, or a configured label column is absent."""


class UnreadableImageError(ValueError):
  """An image file cannot be opened or decoded; the message names it."""
