// LinearLR and CosineAnnealingLR, transliterated from torch 1.13's lr_scheduler.py.
// Both are recursive ("chainable"): each step scales the group's *current* lr, so rounding
// accumulates exactly as in torch, and an lr changed from outside carries on from there.
// Their closed forms are used only where torch uses them: when SequentialLR restarts them.
import { checkNumber, checkInteger, checkOptions } from '../checks';
import {
  type LRSchedulerStateDict,
  LRScheduler,
  PARSE_STATE_DICT,
  type SchedulableOptimizer,
  type SchedulerOptions,
} from './lr_scheduler';

export interface LinearLROptions extends SchedulerOptions {
  /** The factor at step 0, in (0, 1] (default 1/3). */
  startFactor?: number;
  /** The factor from step `totalIters` on, in [0, 1] (default 1). */
  endFactor?: number;
  /** Steps over which the factor moves from start to end: a positive integer (default 5). */
  totalIters?: number;
}

export interface LinearLRStateDict extends LRSchedulerStateDict {
  start_factor: number;
  end_factor: number;
  total_iters: number;
}

export class LinearLR extends LRScheduler {
  declare readonly startFactor: number;
  declare readonly endFactor: number;
  declare readonly totalIters: number;

  constructor(optimizer: SchedulableOptimizer, options: LinearLROptions = {}) {
    const name = new.target.name;
    const opts = checkOptions(options, `${name}: options`, ['startFactor', 'endFactor', 'totalIters', 'lastEpoch']);
    super(
      optimizer,
      { lastEpoch: opts.lastEpoch as number | undefined },
      checkLinear(opts.startFactor ?? 1 / 3, opts.endFactor ?? 1, opts.totalIters ?? 5, `${name}: options.`, false),
    );
  }

  protected computeLr(): number[] {
    const groups = this.optimizer.paramGroups;
    const { startFactor: start, endFactor: end, totalIters: total, lastEpoch: e } = this;
    if (e === 0) return groups.map((g) => g.lr * start);
    if (e > total) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * (1 + (end - start) / (total * start + (e - 1) * (end - start))));
  }

  protected override closedFormLr(): number[] {
    const { startFactor: start, endFactor: end, totalIters: total, lastEpoch: e } = this;
    return this.baseLrs.map((b) => b * (start + ((end - start) * Math.min(total, e)) / total));
  }

  override stateDict(): LinearLRStateDict {
    return {
      start_factor: this.startFactor,
      end_factor: this.endFactor,
      total_iters: this.totalIters,
      ...this.baseStateDict(),
    };
  }

  override [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    const commit = super[PARSE_STATE_DICT](stateDict, where);
    const sd = stateDict as Record<string, unknown>;
    const fields = checkLinear(sd.start_factor, sd.end_factor, sd.total_iters, `${where}: `, true);
    return () => {
      commit();
      Object.assign(this, fields);
    };
  }
}

function checkLinear(start: unknown, end: unknown, total: unknown, prefix: string, snake: boolean) {
  const key = (camel: string, snakeName: string) => `${prefix}${snake ? snakeName : camel}`;
  // torch 1.13 accepts a start factor of 0 and then divides by zero at step 1; torch 2 rejects it.
  const startFactor = checkNumber(start, key('startFactor', 'start_factor'), { min: 0, minExclusive: true });
  if (startFactor > 1)
    throw new RangeError(`${key('startFactor', 'start_factor')} must be in (0, 1], got ${startFactor}`);
  const endFactor = checkNumber(end, key('endFactor', 'end_factor'), { min: 0 });
  if (endFactor > 1) throw new RangeError(`${key('endFactor', 'end_factor')} must be in [0, 1], got ${endFactor}`);
  const totalIters = checkInteger(total, key('totalIters', 'total_iters'), { min: 1 });
  return { startFactor, endFactor, totalIters };
}

export interface CosineAnnealingLROptions extends SchedulerOptions {
  /** Steps from the base lr down to `etaMin` (a half period): a positive integer. */
  tMax: number;
  /** The lowest lr, an absolute value >= 0 (default 0). */
  etaMin?: number;
}

export interface CosineAnnealingLRStateDict extends LRSchedulerStateDict {
  T_max: number;
  eta_min: number;
}

export class CosineAnnealingLR extends LRScheduler {
  declare readonly tMax: number;
  declare readonly etaMin: number;

  constructor(optimizer: SchedulableOptimizer, options: CosineAnnealingLROptions) {
    const name = new.target.name;
    const opts = checkOptions(options, `${name}: options`, ['tMax', 'etaMin', 'lastEpoch']);
    if (opts.tMax === undefined)
      throw new TypeError(`${name}: options.tMax is required (the steps of one half cosine)`);
    super(
      optimizer,
      { lastEpoch: opts.lastEpoch as number | undefined },
      checkCosine(opts.tMax, opts.etaMin ?? 0, `${name}: options.`, false),
    );
  }

  protected computeLr(): number[] {
    const groups = this.optimizer.paramGroups;
    const { tMax, etaMin, lastEpoch: e, baseLrs } = this;
    if (e === 0) return groups.map((g) => g.lr);
    // zip(base_lrs, param_groups) in these two branches, as torch.
    const n = Math.min(baseLrs.length, groups.length);
    if (this.stepCount === 1 && e > 0) {
      // Resumed with lastEpoch > -1: the first step uses the closed form.
      return baseLrs.slice(0, n).map((b) => etaMin + ((b - etaMin) * (1 + Math.cos((e * Math.PI) / tMax))) / 2);
    }
    // One step past each minimum the recursion below would divide 0 by 0; torch steps up instead.
    if ((e - 1 - tMax) % (2 * tMax) === 0) {
      return baseLrs.slice(0, n).map((b, i) => groups[i].lr + ((b - etaMin) * (1 - Math.cos(Math.PI / tMax))) / 2);
    }
    return groups.map(
      (g) =>
        ((1 + Math.cos((Math.PI * e) / tMax)) / (1 + Math.cos((Math.PI * (e - 1)) / tMax))) * (g.lr - etaMin) + etaMin,
    );
  }

  protected override closedFormLr(): number[] {
    const { tMax, etaMin, lastEpoch: e } = this;
    return this.baseLrs.map((b) => etaMin + ((b - etaMin) * (1 + Math.cos((Math.PI * e) / tMax))) / 2);
  }

  override stateDict(): CosineAnnealingLRStateDict {
    return { T_max: this.tMax, eta_min: this.etaMin, ...this.baseStateDict() };
  }

  override [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    const commit = super[PARSE_STATE_DICT](stateDict, where);
    const sd = stateDict as Record<string, unknown>;
    const fields = checkCosine(sd.T_max, sd.eta_min, `${where}: `, true);
    return () => {
      commit();
      Object.assign(this, fields);
    };
  }
}

function checkCosine(tMax: unknown, etaMin: unknown, prefix: string, snake: boolean) {
  // An integer, so the "one step past a minimum" test is exact (torch also accepts floats).
  return {
    tMax: checkInteger(tMax, `${prefix}${snake ? 'T_max' : 'tMax'}`, { min: 1 }),
    etaMin: checkNumber(etaMin, `${prefix}${snake ? 'eta_min' : 'etaMin'}`, { min: 0 }),
  };
}
