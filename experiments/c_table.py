"""One markdown row per workdir: what c knows and what a swap moves, on the
procedural benchmark's ground truth (the item-4 numbers of docs/results.md,
"c carries its label's features").

Reads the held-out numbers that training logged to WORKDIR/metrics.jsonl: the
final record (2000 test images) and, with --stage_one_step, the record at the
end of stage one. The SR/BCA/CFD columns come from WORKDIR/eval/results.json
when `--mode=evaluate` has run.

  python experiments/c_table.py /tmp/base /tmp/adv --labels=glasses,smile
"""

import argparse
import json
import os


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def _held_out(records, step=None):
  rows = [r for r in records if 'eval_reconstruction_mse' in r
          and (step is None or r['step'] == step)]
  return rows[-1] if rows else None


def _fmt(v, digits=3):
  return '-' if v is None else f'{v:.{digits}f}'


def row(workdir, labels, step=None):
  r = _held_out(_records(workdir), step)
  if r is None:
    return f'| {workdir} | (no held-out record) |'
  paper = {}
  results_path = os.path.join(workdir, 'eval', 'results.json')
  if step is None and os.path.exists(results_path):
    with open(results_path) as f:
      paper = json.load(f)['labels']
  cells = [os.path.basename(workdir.rstrip('/')), str(r['step']),
           _fmt(r['eval_reconstruction_mse'], 4)]
  for name in labels:
    g = lambda k: r.get(f'eval_{name}_{k}')
    ratio = lambda a, b: (None if g(a) is None or not g(b)
                          else g(a) / g(b))
    p = paper.get(name, {})
    cells += [
        _fmt(g('c_own_factors_score')), _fmt(g('c_leakage_max')),
        _fmt(g('z_leakage')), _fmt(g('z_own_factors_score')),
        f"{_fmt(ratio('oracle_swap_mse_plus', 'oracle_identity_mse_plus'), 2)}"
        f" / {_fmt(ratio('oracle_swap_mse_minus', 'oracle_identity_mse_minus'), 2)}",
        f"{_fmt(ratio('oracle_swap_region_mse_plus', 'oracle_identity_region_mse_plus'), 2)}"
        f" / {_fmt(ratio('oracle_swap_region_mse_minus', 'oracle_identity_region_mse_minus'), 2)}",
        f"{_fmt(ratio('oracle_swap_region_mse_plus_c0', 'oracle_identity_region_mse_plus'), 2)}",
        f"{_fmt(p.get('sr_plus'), 2)} / {_fmt(p.get('sr_minus'), 2)}"
        if p else '-',
        _fmt(p.get('bca'), 3) if p else _fmt(g('accuracy'), 3)]
  return '| ' + ' | '.join(cells) + ' |'


def header(labels):
  cols = ['run', 'step', 'recon']
  for name in labels:
    cols += [f'{name} c own', 'c leak max', 'z leak', 'z own', 'swap/ident + / -',
             'region + / -', 'region + at c=0', 'SR + / -', 'BCA']
  return ('| ' + ' | '.join(cols) + ' |\n'
          + '|' + '---|' * len(cols))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--labels', default='glasses,smile')
  parser.add_argument('--stage_one_step', type=int, default=0,
                      help='also a row at this step (end of stage one)')
  args = parser.parse_args()
  labels = args.labels.split(',')
  print(header(labels))
  for w in args.workdirs:
    if args.stage_one_step:
      print(row(w, labels, args.stage_one_step))
    print(row(w, labels))


if __name__ == '__main__':
  main()
