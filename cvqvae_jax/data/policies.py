"""Label policies: how the paper turns each dataset's annotations into binary
labels y (paper 3; docs/data.md), with counts of what each rule kept
and dropped. Pure numpy on parsed tables; no file access.

Every policy returns a `LabelTable` over the rows it was given: which rows to
keep, their labels (n, L) int32 and which of them are known (n, L) bool.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from cvqvae_jax.data import errors

# CelebA: the paper's label names -> (attribute column, inverted?). CelebA
# stores the absence of a beard as No_Beard, so beard = not No_Beard.
CELEBA_LABELS: dict[str, tuple[str, bool]] = {
    'glasses': ('Eyeglasses', False),
    'smile': ('Smiling', False),
    'beard': ('No_Beard', True),
    'makeup': ('Heavy_Makeup', False),
}
CELEBA_ATTRIBUTES: tuple[str, ...] = tuple((
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs '
    'Big_Lips Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair '
    'Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair '
    'Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache '
    'Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline '
    'Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings '
    'Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young'
).split())

# CheXpert: the 14 observation columns of train.csv / valid.csv, in order.
CHEXPERT_NO_FINDING = 'No Finding'
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    'No Finding', 'Enlarged Cardiomediastinum', 'Cardiomegaly',
    'Lung Opacity', 'Lung Lesion', 'Edema', 'Consolidation', 'Pneumonia',
    'Atelectasis', 'Pneumothorax', 'Pleural Effusion', 'Pleural Other',
    'Fracture', 'Support Devices')
CHEXPERT_VIEWS = ('frontal', 'all')


@dataclasses.dataclass
class LabelTable:
  keep: np.ndarray     # (n,) bool: rows that become examples
  labels: np.ndarray   # (n, L) int32 0/1 (0 where unknown)
  known: np.ndarray    # (n, L) bool
  counts: dict         # rule -> number of rows, for the log


def _column_error(what: str, name: str, available: Sequence[str],
                  where: str) -> errors.DatasetFormatError:
  return errors.DatasetFormatError(
      f'{what} {name!r} is not a column of {where}.'
      f'{errors.did_you_mean(name, available)} Accepted names: '
      f'{", ".join(available)}.')


def celeba_attribute(label: str, available: Sequence[str] = CELEBA_ATTRIBUTES
                     ) -> tuple[str, bool]:
  """(attribute, inverted) of a label: a paper name ('beard') or any CelebA
  attribute, case-insensitive ('eyeglasses', 'Bald')."""
  if label in CELEBA_LABELS:
    return CELEBA_LABELS[label]
  by_lower = {a.lower(): a for a in available}
  if label.lower() in by_lower:
    return by_lower[label.lower()], False
  raise _column_error('CelebA label', label,
                      [*CELEBA_LABELS, *available], 'list_attr_celeba.txt '
                      '(paper names, then the attributes)')


def celeba(attributes: Mapping[str, np.ndarray],
           labels: Sequence[str]) -> LabelTable:
  """CelebA: y = 1 where the attribute is present (+1 or True), inverted for
  beard (from No_Beard). Every row is kept, every label known.

  attributes: name -> (n,) values in {1, -1} or bool.
  """
  columns = []
  counts: dict = {}
  for label in labels:
    name, inverted = celeba_attribute(label, list(attributes))
    y = np.asarray(attributes[name]) > 0
    y = ~y if inverted else y
    columns.append(y)
    on, off = ('-1', '1') if inverted else ('1', '-1')
    counts[label] = {f'y=1 ({name} = {on})': int(y.sum()),
                     f'y=0 ({name} = {off})': int((~y).sum())}
  n = len(next(iter(attributes.values())))
  y = np.stack(columns, 1).astype(np.int32).reshape(n, len(labels))
  return LabelTable(np.ones(n, bool), y, np.ones(y.shape, bool),
                    {'rows': n, **counts})


def chexpert_column(label: str, available: Sequence[str]) -> str:
  """The observation column of a label: 'cardiomegaly' -> 'Cardiomegaly',
  'pleural_effusion' -> 'Pleural Effusion' (case-insensitive)."""
  by_key = {c.lower().replace(' ', '_'): c for c in available}
  key = label.lower().replace(' ', '_')
  if key not in by_key or by_key[key] == CHEXPERT_NO_FINDING:
    raise _column_error('CheXpert label', label,
                        [k for k, c in by_key.items()
                         if c != CHEXPERT_NO_FINDING],
                        'the CheXpert CSV (pathologies, as lower_case names)')
  return by_key[key]


def parse_chexpert_value(cell: str) -> float:
  """'1.0' / '0.0' / '-1.0' -> float; blank -> nan."""
  cell = cell.strip()
  return float(cell) if cell else float('nan')


def chexpert(observations: Mapping[str, np.ndarray], frontal: np.ndarray,
             labels: Sequence[str], view: str = 'frontal') -> LabelTable:
  """CheXpert (paper 3.2): y = 1 where the pathology is 1.0, y = 0 where
  "No Finding" is 1.0; uncertain (-1.0), blank and other rows are left out.

  observations: column -> (n,) float, nan where blank. frontal: (n,) bool.
  view: 'frontal' keeps frontal views only, 'all' keeps lateral ones too.
  With several labels, a row is kept when any pathology is 1.0 or No Finding
  is 1.0; a label is then known where its column is 1.0 or 0.0 or No
  Finding is 1.0 (unknown labels are never shown to the model).
  """
  if view not in CHEXPERT_VIEWS:
    raise ValueError(f'data.view must be one of {CHEXPERT_VIEWS}, got '
                     f'{view!r}.')
  frontal = np.asarray(frontal, bool)
  n = len(frontal)
  in_view = frontal if view == 'frontal' else np.ones(n, bool)
  no_finding = np.asarray(observations[CHEXPERT_NO_FINDING]) == 1.0
  counts: dict = {'rows': n, f'dropped: view (data.view={view!r})':
                  int((~in_view).sum())}
  keep = in_view & no_finding
  ys, known = [], []
  for label in labels:
    value = np.asarray(observations[chexpert_column(label, list(observations))])
    positive = value == 1.0
    keep |= in_view & positive
    ys.append(positive)
    known.append(positive | no_finding | (value == 0.0))
    rest = in_view & ~positive & ~no_finding
    counts[label] = {
        'y=1 (pathology 1.0)': int((in_view & positive).sum()),
        'y=0 (No Finding 1.0)': int((in_view & ~positive & no_finding).sum()),
        'dropped: uncertain (-1.0)': int((rest & (value == -1.0)).sum()),
        'dropped: blank': int((rest & np.isnan(value)).sum()),
        'dropped: 0.0 without No Finding': int((rest & (value == 0.0)).sum()),
    }
  counts['kept'] = int(keep.sum())
  y = np.stack(ys, 1).astype(np.int32)
  return LabelTable(keep, y, np.stack(known, 1), counts)


def parse_binary(cell: str, where: str) -> float:
  """A users' CSV cell: 1 / 0 (also 1.0, 0.0), blank = unknown (nan)."""
  cell = cell.strip()
  if not cell:
    return float('nan')
  if cell in ('1', '1.0', '0', '0.0'):
    return float(cell)
  raise errors.DatasetFormatError(
      f'{where}: label value {cell!r} is not 1, 0 or blank.')


def binary_columns(columns: Mapping[str, np.ndarray],
                   labels: Sequence[str]) -> LabelTable:
  """Users' CSV: 1 -> y = 1, 0 -> y = 0, blank -> unknown. Every row is
  kept (rows with unknown labels still train the reconstruction)."""
  n = len(next(iter(columns.values())))
  ys, known, counts = [], [], {'rows': n}
  for label in labels:
    value = np.asarray(columns[label], np.float64)
    ys.append(value == 1.0)
    known.append(~np.isnan(value))
    counts[label] = {'y=1': int((value == 1.0).sum()),
                     'y=0': int((value == 0.0).sum()),
                     'unknown (blank)': int(np.isnan(value).sum())}
  return LabelTable(np.ones(n, bool),
                    np.stack(ys, 1).astype(np.int32).reshape(n, len(labels)),
                    np.stack(known, 1).reshape(n, len(labels)), counts)


def describe(counts: Mapping, indent: str = '  ') -> str:
  """Counts as indented lines for the log."""
  lines = []
  for key, value in counts.items():
    if isinstance(value, Mapping):
      lines.append(f'{indent}{key}:')
      lines.append(describe(value, indent + '  '))
    else:
      lines.append(f'{indent}{key}: {value}')
  return '\n'.join(lines)
