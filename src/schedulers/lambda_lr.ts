// LambdaLR: each group's lr = its base lr (initial_lr) * lrLambda(step), as torch's LambdaLR.
import { describe } from '../checks';
import {
  type LRSchedulerStateDict,
  LRScheduler,
  PARSE_STATE_DICT,
  type SchedulableOptimizer,
  type SchedulerOptions,
  checkOptimizer,
} from './lr_scheduler';

/** The multiplicative factor at a step (torch calls the step `epoch`). */
export type LrLambda = (step: number) => number;

export interface LambdaLRStateDict extends LRSchedulerStateDict {
  /** Always null: functions are code, not state (torch saves only callable objects' __dict__). */
  lr_lambdas: null[];
}

export class LambdaLR extends LRScheduler {
  /** One lambda per param group (a single lambda is shared by every group). */
  declare readonly lrLambdas: readonly LrLambda[];

  constructor(
    optimizer: SchedulableOptimizer,
    lrLambda: LrLambda | readonly LrLambda[],
    options: SchedulerOptions = {},
  ) {
    const name = new.target.name;
    checkOptimizer(optimizer, name);
    super(optimizer, options, { lrLambdas: normalizeLambdas(lrLambda, optimizer.paramGroups.length, name) });
  }

  protected computeLr(): number[] {
    // zip(lr_lambdas, base_lrs), as torch.
    const n = Math.min(this.lrLambdas.length, this.baseLrs.length);
    const lrs = new Array<number>(n);
    const name = this.constructor.name;
    for (let i = 0; i < n; i++) lrs[i] = this.baseLrs[i] * checkedFactor(this.lrLambdas, i, this.lastEpoch, name);
    return lrs;
  }

  override stateDict(): LambdaLRStateDict {
    return { ...this.baseStateDict(), lr_lambdas: this.lrLambdas.map(() => null) };
  }

  override [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    const commit = super[PARSE_STATE_DICT](stateDict, where);
    const saved = (stateDict as Record<string, unknown>).lr_lambdas;
    // Optional, so a dict without it loads; when present it must fit this scheduler.
    if (saved !== undefined) {
      if (!Array.isArray(saved)) throw new TypeError(`${where}: lr_lambdas must be an array, got ${describe(saved)}`);
      if (saved.length !== this.lrLambdas.length) {
        throw new RangeError(
          `${where}: lr_lambdas has ${saved.length} entries but the scheduler has ${this.lrLambdas.length} lambdas`,
        );
      }
      saved.forEach((entry, i) => {
        if (entry !== null) {
          throw new TypeError(
            `${where}: lr_lambdas[${i}] holds the state of a Python callable object, which a JavaScript lambda cannot take`,
          );
        }
      });
    }
    return commit;
  }
}

// A module function, not a #private method: computeLr() first runs inside super(), before
// the subclass's private members exist. A bad factor is the lambda's fault, so say so.
function checkedFactor(lambdas: readonly LrLambda[], i: number, step: number, name: string): number {
  const f = lambdas[i](step);
  if (typeof f === 'number' && Number.isFinite(f) && f >= 0) return f;
  // One lambda shared by every group is named without an index.
  const who = `${name}: lrLambda${lambdas.every((l) => l === lambdas[0]) ? '' : `[${i}]`}`;
  if (typeof f !== 'number')
    throw new TypeError(`${who} returned ${describe(f)} at step ${step}; it must return a number`);
  throw new RangeError(`${who} returned ${f} at step ${step}; the factor must be a finite number >= 0`);
}

function normalizeLambdas(lrLambda: unknown, groups: number, name: string): LrLambda[] {
  if (typeof lrLambda === 'function') return new Array<LrLambda>(groups).fill(lrLambda as LrLambda);
  if (!Array.isArray(lrLambda)) {
    throw new TypeError(
      `${name}: lrLambda must be a function or an array of functions (one per param group), got ${describe(lrLambda)}`,
    );
  }
  if (lrLambda.length !== groups) {
    throw new RangeError(`${name}: expected ${groups} lr lambdas (one per param group), got ${lrLambda.length}`);
  }
  lrLambda.forEach((f, i) => {
    if (typeof f !== 'function') throw new TypeError(`${name}: lrLambda[${i}] must be a function, got ${describe(f)}`);
  });
  return [...lrLambda];
}
