// Warmup schedules of Hugging Face transformers: each is a LambdaLR whose lambda is the
// `get_*_schedule_with_warmup` formula, written in the same order of operations as
// huggingface/transformers src/transformers/optimization.py (read at commit 005edacb6b5d):
//   _get_linear_schedule_with_warmup_lr_lambda, _get_cosine_schedule_with_warmup_lr_lambda,
//   _get_constant_schedule_with_warmup_lr_lambda, _get_inverse_sqrt_schedule_lr_lambda.
// Each warmup rises linearly from 0 at step 0 to 1 at step warmupSteps.
import { checkNumber, checkInteger, checkOptions } from '../checks';
import { LambdaLR } from './lambda_lr';
import type { SchedulableOptimizer, SchedulerOptions } from './lr_scheduler';

export interface ConstantWithWarmupOptions extends SchedulerOptions {
  /** Steps of linear warmup: an integer >= 0. */
  warmupSteps: number;
}

export interface LinearWarmupOptions extends ConstantWithWarmupOptions {
  /** The step at which the lr reaches 0: an integer >= warmupSteps. */
  totalSteps: number;
}

export interface CosineWithWarmupOptions extends LinearWarmupOptions {
  /** Waves of the cosine after warmup (default 0.5: one half cosine from 1 down to 0). */
  numCycles?: number;
}

export interface InverseSqrtWithWarmupOptions extends ConstantWithWarmupOptions {
  /** The decay's time scale, an integer >= 1 (default warmupSteps, or 10000 when that is 0). */
  timescale?: number;
}

/** transformers' get_linear_schedule_with_warmup: 0 -> 1 over warmup, then 1 -> 0 at totalSteps. */
export function linearWarmup(optimizer: SchedulableOptimizer, options: LinearWarmupOptions): LambdaLR {
  const o = checkOptions(options, 'linearWarmup: options', ['warmupSteps', 'totalSteps', 'lastEpoch']);
  const w = warmup(o, 'linearWarmup');
  const t = total(o, w, 'linearWarmup');
  return new LambdaLR(
    optimizer,
    (s) => (s < w ? s / Math.max(1, w) : Math.max(0, (t - s) / Math.max(1, t - w))),
    lastEpochOf(o),
  );
}

/** transformers' get_cosine_schedule_with_warmup: 0 -> 1 over warmup, then a cosine to 0 at totalSteps. */
export function cosineWithWarmup(optimizer: SchedulableOptimizer, options: CosineWithWarmupOptions): LambdaLR {
  const o = checkOptions(options, 'cosineWithWarmup: options', ['warmupSteps', 'totalSteps', 'numCycles', 'lastEpoch']);
  const w = warmup(o, 'cosineWithWarmup');
  const t = total(o, w, 'cosineWithWarmup');
  const cycles = checkNumber(o.numCycles ?? 0.5, 'cosineWithWarmup: options.numCycles', {
    min: 0,
    minExclusive: true,
  });
  return new LambdaLR(
    optimizer,
    (s) => {
      if (s < w) return s / Math.max(1, w);
      const progress = (s - w) / Math.max(1, t - w);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    },
    lastEpochOf(o),
  );
}

/** transformers' get_constant_schedule_with_warmup: 0 -> 1 over warmup, then 1. */
export function constantWithWarmup(optimizer: SchedulableOptimizer, options: ConstantWithWarmupOptions): LambdaLR {
  const o = checkOptions(options, 'constantWithWarmup: options', ['warmupSteps', 'lastEpoch']);
  const w = warmup(o, 'constantWithWarmup');
  return new LambdaLR(optimizer, (s) => (s < w ? s / Math.max(1, w) : 1), lastEpochOf(o));
}

/**
 * transformers' get_inverse_sqrt_schedule: 0 -> 1 over warmup, then 1 / sqrt((s + shift) / timescale)
 * with shift = timescale - warmupSteps, so the decay starts at exactly 1.
 */
export function inverseSqrtWithWarmup(
  optimizer: SchedulableOptimizer,
  options: InverseSqrtWithWarmupOptions,
): LambdaLR {
  const o = checkOptions(options, 'inverseSqrtWithWarmup: options', ['warmupSteps', 'timescale', 'lastEpoch']);
  const w = warmup(o, 'inverseSqrtWithWarmup');
  // transformers: `timescale = num_warmup_steps or 10_000`.
  const timescale = checkInteger(o.timescale ?? (w || 10_000), 'inverseSqrtWithWarmup: options.timescale', { min: 1 });
  const shift = timescale - w;
  return new LambdaLR(
    optimizer,
    (s) => (s < w ? s / Math.max(1, w) : 1 / Math.sqrt((s + shift) / timescale)),
    lastEpochOf(o),
  );
}

function warmup(o: Record<string, unknown>, name: string): number {
  if (o.warmupSteps === undefined) throw new TypeError(`${name}: options.warmupSteps is required (an integer >= 0)`);
  return checkInteger(o.warmupSteps, `${name}: options.warmupSteps`, { min: 0 });
}

function total(o: Record<string, unknown>, warmupSteps: number, name: string): number {
  if (o.totalSteps === undefined)
    throw new TypeError(`${name}: options.totalSteps is required (the step at which the lr reaches 0)`);
  const t = checkInteger(o.totalSteps, `${name}: options.totalSteps`, { min: 1 });
  if (t < warmupSteps)
    throw new RangeError(`${name}: options.totalSteps (${t}) must be >= options.warmupSteps (${warmupSteps})`);
  return t;
}

function lastEpochOf(o: Record<string, unknown>): SchedulerOptions {
  return { lastEpoch: o.lastEpoch as number | undefined };
}
