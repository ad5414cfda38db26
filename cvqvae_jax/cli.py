"""What the entry points (main.py, benchmark.py, experiments/) add to the
library: errors of the user's as one line, training with its end-of-run
summary on the console, and the offline modes (--mode=evaluate, figures).

train.py is the loop itself and prints nothing of this.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from absl import logging
import jax
import ml_collections

from cvqvae_jax import checkpointing
from cvqvae_jax import config_checks
from cvqvae_jax import evaluation
from cvqvae_jax import figures
from cvqvae_jax import paths
from cvqvae_jax import previews
from cvqvae_jax import profiling
from cvqvae_jax import train as train_lib
from cvqvae_jax import two_step
from cvqvae_jax import workdir_lock
from cvqvae_jax import models

# Errors that are the user's to fix: entry points print the message, no
# traceback.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError,
               checkpointing.CheckpointMismatchError,
               train_lib.NonFiniteLossError, workdir_lock.WorkdirLockedError,
               checkpointing.CheckpointSaveError)


@contextlib.contextmanager
def exit_on_user_error(prefix: str = 'error'):
  """For entry points: an error of USER_ERRORS inside the block becomes one
  line on stderr ('PREFIX: message') and exit status 1; its traceback goes
  to the debug log only."""
  try:
    yield
  except USER_ERRORS as e:
    logging.debug('Traceback of the error below:', exc_info=True)
    print(f'{prefix}: {e}', file=sys.stderr, flush=True)
    sys.exit(1)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """train.train_and_evaluate, then (process 0, unless preempted) the
  summary and the wall time on stdout. Returns its results."""
  results = train_lib.train_and_evaluate(config, workdir)
  if not results:
    return results
  workdir = paths.absolute(workdir)
  # Read by every process: orbax synchronises the processes that read a
  # checkpoint.
  step = two_step.latest_stage(workdir, config).step
  if jax.process_index() == 0:
    print(summary(workdir, step, results, two_step.variant(config)),
          flush=True)
    print(profiling.WALL.line(), flush=True)
  return results


def summary(workdir: str, step: int, results: dict[str, float],
            variant: str) -> str:
  """The end of a training run: its variant, held-out results and
  outputs."""
  lines = [f'Trained to step {step}: {variant}. Held-out results:']
  lines += [f'  {k}: {v:.4f}' for k, v in results.items()]
  lines += [f'Outputs in {workdir}:',
            '  checkpoints/       orbax checkpoints (resume: run again)',
            '  config.json        the full config',
            '  metrics.jsonl      one record per logged step',
            '  events.out.*       TensorBoard event files',
            f'  {previews.PREVIEW:18s} reconstructions and swaps']
  return '\n'.join(lines)


def run_offline(mode: str, config: ml_collections.ConfigDict,
                workdir: str) -> dict[str, Any]:
  """'evaluate' or 'figures' from the latest checkpoint of `workdir`."""
  config_checks.validate(config)
  if jax.process_count() > 1:
    raise ValueError(
        f'--mode={mode} runs in one process (it reads the whole test split '
        'and trains and caches the classifiers in WORKDIR/classifier/): '
        f'start it without --distributed; {jax.process_count()} processes '
        'were started.')
  workdir = paths.absolute(workdir)
  setup = train_lib.build(config)
  model = setup.model
  step, stage, _ = two_step.latest_stage(workdir, config, setup.image_shape)
  if stage == two_step.STAGE_ONE:
    raise ValueError(
        f'--mode={mode}: the latest checkpoint of {workdir} (step {step}) is '
        f"stage one's ({two_step.variant(two_step.stage_one_config(config))}"
        f'): training stopped before stage two saved a checkpoint. Run the '
        'training command again (it resumes where it stopped), then '
        f'--mode={mode}.')
  # Parameters only: the optimizer state (which depends on freeze_steps) is
  # not needed to evaluate.
  flat, source = checkpointing.restore_params(
      workdir, setup.abstract_state.params,
      description=models.description(config, setup.image_shape))
  params = checkpointing.unflatten(flat)
  if mode == 'evaluate':
    results = evaluation.paper_evaluation(params, model, config, workdir,
                                          int(source['step']))
    path = evaluation.write_results(workdir, results)
    print(evaluation.format_table(results))
    print(f'Wrote {path}', flush=True)
    return results
  if mode == 'figures':
    written = figures.write_figures(workdir, model, params, config)
    written['samples'] = previews.write_preview(
        paths.join(workdir, 'figures'), evaluation.Codec(model), params,
        config)
    print('Wrote:\n  ' + '\n  '.join(written.values()), flush=True)
    return written
  raise ValueError(f'Unknown mode {mode!r}.')
