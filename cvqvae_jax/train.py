"""Training: the pure, jit-compiled train step and the loop around it.

loss_fn and train_step are pure functions of the parameters and a batch;
build derives a run's mesh, model (models.for_config), state initialiser and
shardings from its config; train_and_evaluate is the loop (one stage or two,
two_step.py), which resumes, checkpoints and evaluates (evaluation.py). The
command line's part (errors as one line, the summary, --mode=evaluate and
figures) is cli.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cvqvae_jax import checkpointing
from cvqvae_jax import config_checks
from cvqvae_jax import evaluation
from cvqvae_jax import metric_writers
from cvqvae_jax import objectives
from cvqvae_jax import optim
from cvqvae_jax import paths
from cvqvae_jax import previews
from cvqvae_jax import profiling
from cvqvae_jax import sharding
from cvqvae_jax import two_step
from cvqvae_jax import workdir_lock
from cvqvae_jax import xla_options
from cvqvae_jax.data import pipeline
from cvqvae_jax import models as models_lib
from cvqvae_jax.models import sampling

TRAIN, COMPILE, EVAL = profiling.WallTime.PHASES


class NonFiniteLossError(FloatingPointError):
  """A loss term became NaN or Inf."""


TrainState = train_state.TrainState


def create_train_state(rng, *, model, tx, image_shape,
                       num_labels: int) -> TrainState:
  x = jnp.zeros((1, *image_shape), jnp.float32)
  labels = jnp.zeros((1, num_labels), jnp.int32)
  params_rng, sample_rng = jax.random.split(rng)
  variables = model.init({'params': params_rng, 'sample': sample_rng}, x,
                         labels, labels > 0, train=True)
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           tx=tx)


def temperatures(step, objective) -> tuple[jax.Array, jax.Array]:
  """(y temperature, z temperature) at `step`."""
  y_t = sampling.temperature_schedule(
      step, objective.y_temperature_start, objective.y_temperature_end,
      objective.y_temperature_anneal_steps)
  z_t = sampling.temperature_schedule(
      step, objective.z_temperature_start, objective.z_temperature_end,
      objective.z_temperature_anneal_steps)
  return y_t, z_t


def loss_fn(params, batch, rng, step, *, model, objective):
  """The model's objective and its terms, logged separately.

  Every model defines its own terms from the output of one training pass
  (models/: CVQVAE's entropy KL and VQ terms, the Gaussian KL of CGVAE, the
  baselines' KLs and CCVAE's bound); objectives.model_terms weights them by
  the table objectives.TERMS, and terms a model does not have are 0, so
  that every run logs the same keys.
  """
  y_t, z_t = temperatures(step, objective)
  out = model.apply({'params': params}, batch['image'], batch['label'],
                    batch['labelled'], train=True, y_temperature=y_t,
                    z_temperature=z_t, rngs={'sample': rng})
  terms = objectives.model_terms(model, out, batch, objective)
  correct = jnp.argmax(out['logits_y'], -1) == batch['label']
  labelled = batch['labelled'].astype(jnp.float32)
  terms['label_accuracy'] = (jnp.sum(correct * labelled)
                             / jnp.maximum(labelled.sum(), 1.0))
  terms['y_temperature'] = y_t
  return terms['loss'], terms


def train_step(state: TrainState, batch, rng, *, model, objective):
  """One Adam step on one global batch. Returns (state, metrics)."""
  rng = jax.random.fold_in(rng, state.step)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_fn, model=model, objective=objective),
      has_aux=True)
  (_, metrics), grads = grad_fn(state.params, batch, rng, state.step)
  metrics['grad_norm'] = optax.global_norm(grads)
  return state.apply_gradients(grads=grads), metrics


def _check_finite(history: list[tuple[int, dict]], manager) -> None:
  """Raises NonFiniteLossError naming the first step and term that is not
  finite; the last good checkpoint stays on disk."""
  for step, metrics in history:
    bad = objectives.first_non_finite(metrics)
    if bad is not None:
      name, value = bad
      manager.wait_until_finished()
      raise NonFiniteLossError(
          f'Loss term {name!r} is {value} at step {step}. Training stopped; '
          f'the last good checkpoint is step {manager.latest_step()} in '
          f'{manager.directory}.')


def progress_line(prefix: str, summary: dict[str, float]) -> str:
  """The console's line for one logged step: `prefix` (the step and its
  rate), the loss, the terms objectives.TERMS shows and the label
  accuracy."""
  parts = [prefix, f"loss {summary['loss']:.4f}"]
  parts += [f'{term.shown} {summary[name]:{term.fmt}}'
            for name, term in objectives.TERMS.items() if term.shown]
  parts.append(f"acc {summary['label_accuracy']:.3f}")
  return ' | '.join(parts)


def _write_config(workdir: str, config) -> None:
  (epath.Path(workdir) / 'config.json').write_text(
      config.to_json_best_effort(indent=2, sort_keys=True))


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run derives from its config before it touches data.

  mesh: the device mesh; model: the Flax module; init: rng -> TrainState;
  abstract_state: the state's ShapeDtypeStructs with shardings (for jit and
  for restoring checkpoints); state_sharding / batch_sharding: where the
  state and a global batch live; image_shape: (S, S, C).
  """
  mesh: jax.sharding.Mesh
  model: Any
  init: Any
  abstract_state: Any
  state_sharding: Any
  batch_sharding: Any
  image_shape: tuple[int, ...]


def build(config: ml_collections.ConfigDict) -> Setup:
  """The mesh, model, state initialiser and shardings of `config`."""
  mesh = sharding.create_mesh(config.mesh_shape, config.mesh_axes)
  sharding.check_batch_size(config.batch_size, mesh)
  image_shape = tuple(pipeline.image_shape(config.data))
  model = models_lib.for_config(config, image_shape)
  init = functools.partial(create_train_state, model=model,
                           tx=optim.create_optimizer(config),
                           image_shape=image_shape,
                           num_labels=len(config.data.labels))
  abstract_state = jax.eval_shape(init, jax.random.key(0))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh),
                                abstract_state)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_state, state_sharding)
  return Setup(mesh=mesh, model=model, init=init,
               abstract_state=abstract_state, state_sharding=state_sharding,
               batch_sharding=sharding.batch_sharding(mesh),
               image_shape=image_shape)


def jit_init(setup: Setup):
  """rng -> a fresh TrainState, placed with the state's shardings (compiled
  by xla_options.jit_init: 2-4x faster, the same bits)."""
  return xla_options.jit_init(setup.init, out_shardings=setup.state_sharding)


def jit_train_step(setup: Setup, objective: ml_collections.ConfigDict):
  """train_step compiled for `setup`'s mesh: (state, batch, rng) ->
  (state, metrics), the state's buffers donated."""
  replicated = sharding.replicated(setup.mesh)
  return xla_options.jit(
      functools.partial(train_step, model=setup.model, objective=objective),
      in_shardings=(setup.state_sharding, setup.batch_sharding, replicated),
      out_shardings=(setup.state_sharding, replicated),
      donate_argnums=0)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, float]:
  """Trains (or resumes) in `workdir`; returns the final held-out metrics,
  or {} when the run was preempted (run again to continue).

  With a stage one (config.stage_one, paper 2.4: CVQVAE is approach E),
  stage one trains first for its share of num_train_steps, then the model
  itself starts from its C_phi and tokens and trains to num_train_steps.
  Both stages write the same workdir with one step count; a run stopped in
  either stage resumes there, and stage one is never trained again once
  stage two has saved a checkpoint.
  """
  profiling.WALL.reset()
  config_checks.validate(config)
  two_step.check_config(config, workdir)
  workdir = paths.absolute(workdir)
  paths.check_writable_workdir(workdir)
  # One writer per workdir (docs/reliability.md), held until this returns.
  with workdir_lock.WorkdirLock(workdir, jax.process_index()):
    checkpointing.set_aside_damaged(workdir)
    stage_one = None
    if two_step.has_stage_one(config):
      stage_one = two_step.stage_one_config(config)
      logging.info('Training %s: stage one (%s) for steps 1-%d, then %s to '
                   'step %d.', two_step.variant(config),
                   two_step.variant(stage_one), stage_one.num_train_steps,
                   config.model.name, config.num_train_steps)
    if jax.process_index() == 0:
      _write_config(workdir, config)
    if stage_one is not None:
      step, stage, _ = two_step.latest_stage(
          workdir, config, pipeline.image_shape(config.data))
      # Stage one is done at its last step, or once anything else saved.
      if (step is None or (stage == two_step.STAGE_ONE
                           and step < stage_one.num_train_steps)):
        if _train(stage_one, workdir, final=False) is None:
          return {}
    return _train(config, workdir) or {}


@checkpointing.disk_full_is_one_line
def _train(config: ml_collections.ConfigDict, workdir: str, *,
           final: bool = True) -> dict[str, float] | None:
  """One stage: trains `config`'s model to config.num_train_steps. Returns
  its held-out metrics, or None when preempted.

  When the workdir's latest checkpoint is that of `config`'s stage one (its
  last step), training starts from it (C_phi and the tokens restored, the
  step count continued). final=False (a stage one): no samples.png.
  The loop's resources (the SIGTERM guard, the profiler trace, the metric
  writer) are closed on every path: the end, a preemption, an error (a
  non-finite loss, a failed save).
  """
  with contextlib.ExitStack() as stack:
    return _train_stage(stack, config, workdir, final)


def _train_stage(stack: contextlib.ExitStack,
                 config: ml_collections.ConfigDict, workdir: str,
                 final: bool) -> dict[str, float] | None:
  """_train's body; what it opens is closed by `stack`."""
  is_chief = jax.process_index() == 0
  started = time.perf_counter()
  setup = build(config)
  model, image_shape = setup.model, setup.image_shape
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  train_iter = iter(pipeline.create_train_dataset(config))
  manager = checkpointing.create_manager(workdir,
                                         config.max_checkpoints_to_keep)
  description = models_lib.description(config, image_shape)
  latest, stage, _ = two_step.latest_stage(workdir, config, image_shape,
                                           manager=manager)
  from_stage_one = stage == two_step.STAGE_ONE
  if latest is not None and not from_stage_one:
    state = checkpointing.restore(manager, setup.abstract_state, train_iter,
                                  description)
    logging.info('Resumed from %s at step %d.', manager.directory,
                 int(state.step))
  else:
    state = jit_init(setup)(init_rng)
    init_from = workdir if from_stage_one else config.init_from
    if init_from:  # Stage two (paper 2.4); not again on resume.
      state = state.replace(params=two_step.initialise_from(
          init_from, state.params, setup.abstract_state.params,
          workdir if is_chief else None,
          warm_start=config.stage_one.get('warm_start', False)))
    if model.initialises_from_data:  # e.g. CVQVAE's codebook_init='data'
      batches = iter(pipeline.create_train_dataset(config))
      first = [next(batches)
               for _ in range(model.init_batches(config.batch_size))]
      first = sharding.put_batch(
          jax.tree.map(lambda *parts: np.concatenate(parts), *first),
          setup.batch_sharding)
      state = state.replace(params=xla_options.jit(model.init_from_batch)(
          state.params, first, jax.random.fold_in(init_rng, 1)))
      if 'encoder_region' in state.params:
        _log_encoder_region(state.params['encoder_region'],
                            int(first['image'].shape[0]))
      if 'feature_regions' in state.params:
        _log_feature_regions(state.params['feature_regions'],
                             tuple(config.data.labels))
    if from_stage_one:  # One step count for both stages.
      state = state.replace(step=latest)
    state = jax.device_put(state, setup.state_sharding)
  logging.info('Parameters: %s', _param_overview(state.params))
  start_step = int(state.step)
  writer = stack.enter_context(contextlib.closing(metric_writers.MetricWriter(
      workdir, start_step, enabled=is_chief)))

  p_train_step = jit_train_step(setup, config.objective)

  codec = evaluation.Codec(model)
  # The guard and the trace close before the final evaluation (loop.close())
  # or, on any other path, with `stack`.
  loop = stack.enter_context(contextlib.ExitStack())
  guard = loop.enter_context(contextlib.closing(
      checkpointing.PreemptionGuard(manager)))
  trace = loop.enter_context(contextlib.closing(profiling.StepTrace(
      workdir, config.get('profile_steps', (0, 0)), enabled=is_chief)))
  progress = metric_writers.Progress(config.num_train_steps)
  evals_before = profiling.WALL.seconds[EVAL]
  history: list[tuple[int, dict]] = []
  last_rate = 0.0
  if start_step < config.num_train_steps:
    # Room for the first save, before training steps it could not keep.
    checkpointing.check_space(manager, _next_save(start_step, config), state)
    logging.info('Compiling the train step (the first step waits for it)...')
  space_due = False  # Room for the next save, checked once a save is done.
  profiling.WALL.add(COMPILE, time.perf_counter() - started)
  loop_start, compiled = time.perf_counter(), 0.0
  for step in range(start_step + 1, config.num_train_steps + 1):
    if space_due and not manager.is_saving_in_progress():
      checkpointing.check_space(manager, _next_save(step - 1, config))
      space_due = False
    trace.before(step)
    batch = sharding.put_batch(next(train_iter), setup.batch_sharding)
    state, metrics = p_train_step(state, batch, step_rng)
    trace.after(step, metrics)
    history.append((step, metrics))
    if step == start_step + 1:
      jax.block_until_ready(metrics)
      compiled = time.perf_counter() - loop_start
      progress.start(step)  # Rates exclude compilation.
    is_last = step == config.num_train_steps
    if step % config.log_every_steps == 0 or is_last:
      history = jax.device_get(history)
      _check_finite(history, manager)
      summary = {k: float(np.mean([m[k] for _, m in history]))
                 for k in history[-1][1]}
      line, last_rate = progress.line(step)
      summary['steps_per_second'] = last_rate
      writer.write(step, summary)
      logging.info('%s', progress_line(line, summary))
      history = []
    if (config.eval_every_steps and step % config.eval_every_steps == 0
        and not is_last):  # Learning curves of the held-out numbers.
      with profiling.WALL.timed(EVAL):
        curve = evaluation.evaluate(_local(state.params), model, config,
                                    codec,
                                    num_examples=config.eval.curve_examples)
      writer.write(step, curve)
      logging.info('Held-out at step %d (%d examples): %s', step,
                   config.eval.curve_examples, _brief(curve))
    if (is_chief and config.get('sample_every_steps')
        and step % config.sample_every_steps == 0):  # Pictures on the way.
      previews.write_step_samples(workdir, codec, _local(state.params),
                                  config, step, writer)
    preempted = guard.should_stop(step)
    if step % config.checkpoint_every_steps == 0 or is_last or preempted:
      _check_finite(jax.device_get(history), manager)
      checkpointing.save(manager, step, state, train_iter, description)
      space_due = not is_last
    if preempted:
      checkpointing.wait_until_saved(manager)
      if is_chief:
        print(f'Preempted: saved step {step} in {manager.directory}; run '
              'the same command again to continue.', flush=True)
      return None
  checkpointing.wait_until_saved(manager)
  profiling.WALL.add(COMPILE, compiled)
  profiling.WALL.add(TRAIN, time.perf_counter() - loop_start - compiled
                     - profiling.WALL.seconds[EVAL] + evals_before)
  manager.close()
  loop.close()

  # Every process computes the same numbers on the whole test split (a
  # deterministic evaluation on its own copy of the parameters); process 0
  # writes them.
  with profiling.WALL.timed(EVAL):
    results = evaluation.evaluate(_local(state.params), model, config, codec)
  if is_chief:
    if int(state.step) > start_step:  # Not again for an already-finished run.
      writer.write(int(state.step), {**results,
                                     'steps_per_second': last_rate})
    if final:
      previews.write_preview(workdir, codec, _local(state.params), config)
    else:
      logging.info('Stage one (%s) done at step %d; held-out: %s',
                   two_step.variant(config), int(state.step),
                   _brief(results))
  return results


def _next_save(step: int, config) -> int:
  """The first step after `step` that saves a checkpoint."""
  every = config.checkpoint_every_steps
  return min((step // every + 1) * every, config.num_train_steps)


def _local(tree):
  """This process's copy of replicated global arrays, so that evaluation
  (jit on host batches) runs on one local device when there are several
  processes; with one process, `tree` itself."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def _brief(results: dict) -> str:
  """The held-out numbers that matter most, on one line."""
  keys = ('eval_reconstruction_mse', 'eval_reconstruction_mse_sample',
          'eval_posterior_entropy')
  parts = [f'{k[5:]} {results[k]:.4f}' for k in keys if k in results]
  for k, v in results.items():
    if k.endswith(('oracle_swap_mse_plus', 'oracle_swap_mse_minus',
                   'c_leakage', 'z_leakage')):
      parts.append(f'{k[5:]} {v:.3f}')
  return ', '.join(parts)


def _log_encoder_region(region: jax.Array, examples: int) -> None:
  """model.encoder_masking: how much of the image E_phi is not shown."""
  hidden = int(np.sum(np.asarray(jax.device_get(region)) > 0.5))
  if not hidden:
    logging.warning(
        'model.encoder_masking: no region found in the labelled examples of '
        '%d training examples (each label needs labelled examples of both '
        'values); E_phi sees the whole image.', examples)
  else:
    logging.info('model.encoder_masking: E_phi does not see %d of %d pixels '
                 '(%.1f %%, where the labels act; from the labelled examples '
                 'of %d training examples).', hidden, region.size,
                 100 * hidden / region.size, examples)


def _log_feature_regions(regions: jax.Array, labels: Sequence[str]) -> None:
  """model.feature_masking: how much of the image each label's c is not
  shown (the other labels' regions outside its own)."""
  hidden = np.asarray(jax.device_get(objectives.hidden_from_others(
      jnp.asarray(regions) > 0.5)))
  for name, region, hide in zip(labels, np.asarray(regions) > 0.5, hidden):
    logging.info('model.feature_masking: %s acts on %d pixels; its c does '
                 'not see %d of %d (%.1f %%, where the other labels act).',
                 name, int(region.sum()), int(hide.sum()), hide.size,
                 100 * hide.sum() / hide.size)
  if not hidden.any():
    logging.warning('model.feature_masking: no label region lies outside '
                    'another label\'s; every c sees the whole image.')


def _param_overview(params) -> str:
  sizes = {k: sum(x.size for x in jax.tree.leaves(v))
           for k, v in flax.core.unfreeze(params).items()}
  total = sum(sizes.values())
  return f'{total:,} in all: ' + ', '.join(f'{k} {v:,}'
                                         for k, v in sizes.items())
