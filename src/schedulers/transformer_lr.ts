// TransformerLR: the "Attention is all you need" warmup schedule as the seed course writes
// it, a LambdaLR whose factor multiplies each group's base lr (initial_lr):
//   factor * dModel^-0.5 * min(s^-0.5, s * warmupSteps^-1.5),   s = max(step, 1)
// The peak, at s = warmupSteps, is factor * (dModel * warmupSteps)^-0.5 times the base lr.
import { checkNumber, checkInteger, checkOptions, describe } from '../checks';
import { LambdaLR, type LambdaLRStateDict } from './lambda_lr';
import { PARSE_STATE_DICT, type SchedulableOptimizer, type SchedulerOptions } from './lr_scheduler';

export interface TransformerLROptions extends SchedulerOptions {
  /** The model width d_model: a positive integer. */
  dModel: number;
  /** Steps of linear warmup: a positive integer (default 4000). */
  warmupSteps?: number;
  /** A constant multiplier, > 0 (default 1). */
  factor?: number;
}

export interface TransformerLRStateDict extends LambdaLRStateDict {
  d_model: number;
  warmup_steps: number;
  factor: number;
}

interface Shape {
  dModel: number;
  warmupSteps: number;
  factor: number;
}

/** The seed's factor at `step`; step 0 is treated as 1 (0^-0.5 would be infinite). */
export function transformerLrFactor(step: number, { dModel, warmupSteps, factor }: Shape): number {
  const s = Math.max(step, 1);
  return factor * dModel ** -0.5 * Math.min(s ** -0.5, s * warmupSteps ** -1.5);
}

export class TransformerLR extends LambdaLR {
  // Shared with the lambda, so loadStateDict() can restore the shape the lambda reads.
  #shape: Shape;

  constructor(optimizer: SchedulableOptimizer, options: TransformerLROptions) {
    const name = new.target.name;
    const opts = checkOptions(options, `${name}: options`, ['dModel', 'warmupSteps', 'factor', 'lastEpoch']);
    if (opts.dModel === undefined)
      throw new TypeError(`${name}: options.dModel is required (the model width, e.g. 512)`);
    const shape = checkShape(opts.dModel, opts.warmupSteps ?? 4000, opts.factor ?? 1, `${name}: options.`);
    super(optimizer, (step) => transformerLrFactor(step, shape), { lastEpoch: opts.lastEpoch as number | undefined });
    this.#shape = shape;
  }

  get dModel(): number {
    return this.#shape.dModel;
  }

  get warmupSteps(): number {
    return this.#shape.warmupSteps;
  }

  get factor(): number {
    return this.#shape.factor;
  }

  override stateDict(): TransformerLRStateDict {
    const { dModel, warmupSteps, factor } = this.#shape;
    return { ...super.stateDict(), d_model: dModel, warmup_steps: warmupSteps, factor };
  }

  override [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    const commit = super[PARSE_STATE_DICT](stateDict, where);
    const sd = stateDict as Record<string, unknown>;
    // Optional, so a plain LambdaLR dict (as torch writes for the seed's schedule) loads too.
    const present = ['d_model', 'warmup_steps', 'factor'].filter((k) => sd[k] !== undefined);
    if (present.length === 0) return commit;
    if (present.length !== 3) {
      throw new TypeError(
        `${where}: d_model, warmup_steps and factor go together; the dict has only ${present.join(', ')}`,
      );
    }
    const shape = checkShape(sd.d_model, sd.warmup_steps, sd.factor, `${where}: `, true);
    return () => {
      commit();
      Object.assign(this.#shape, shape);
    };
  }
}

function checkShape(dModel: unknown, warmupSteps: unknown, factor: unknown, prefix: string, snake = false): Shape {
  const key = (camel: string, snakeName: string) => `${prefix}${snake ? snakeName : camel}`;
  if (typeof dModel !== 'number')
    throw new TypeError(`${key('dModel', 'd_model')} must be a positive integer, got ${describe(dModel)}`);
  checkInteger(dModel, key('dModel', 'd_model'), { min: 1 });
  if (typeof warmupSteps !== 'number') {
    throw new TypeError(
      `${key('warmupSteps', 'warmup_steps')} must be a positive integer, got ${describe(warmupSteps)}`,
    );
  }
  checkInteger(warmupSteps, key('warmupSteps', 'warmup_steps'), { min: 1 });
  checkNumber(factor, key('factor', 'factor'), { min: 0, minExclusive: true });
  return { dModel, warmupSteps, factor: factor as number };
}
