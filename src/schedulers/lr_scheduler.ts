// LRScheduler: torch.optim.lr_scheduler._LRScheduler (torch 1.13) in TypeScript.
//
// A scheduler only writes `paramGroups[i].lr` (and records `initialLr`); the optimizer copies
// the group lrs into its per-step scalar table at the next step, so a new lr never rebuilds
// the launch plan (docs/design.md section 4). Per-step work here is O(groups).
import { Optimizer, type ParamGroup } from '../optimizer';
import { checkNumber, checkInteger, checkNumberArray, checkOptions, describe } from '../checks';
import { hookOptimizerStep, isStepHooked, optimizerStepCounter, warnOnce } from './optimizer_hook';

/** A param group a scheduler can drive: every optimizer's groups have an `lr`. */
export type SchedulableGroup = ParamGroup & { lr: number };
/** Any Optimizer subclass (AdamW, ...): schedulers touch only `lr` and `initialLr`. */
export type SchedulableOptimizer = Optimizer<SchedulableGroup>;

export interface SchedulerOptions {
  /**
   * torch's `last_epoch`: -1 (default) starts the schedule; a larger value resumes it, which
   * needs `initialLr` on every group (load the optimizer's state dict first).
   */
  lastEpoch?: number;
}

/** What every scheduler's state dict holds (torch's snake_case keys). */
export interface SchedulerStateDict {
  last_epoch: number;
  _last_lr: number[];
  [key: string]: unknown;
}

/** torch's `_LRScheduler.state_dict()`: every attribute but the optimizer. */
export interface LRSchedulerStateDict extends SchedulerStateDict {
  base_lrs: number[];
  verbose: boolean;
  _step_count: number;
  _get_lr_called_within_step: boolean;
}

// Internal protocol between schedulers (SequentialLR drives the schedulers it holds). Symbols,
// not protected methods, because TypeScript forbids calling a protected method on another
// instance, and these are not part of the public API.
/** torch's `_initial_step()`: resets the step counts and performs a step. */
export const INITIAL_STEP: unique symbol = Symbol('LRScheduler.initialStep');
/** torch's deprecated `step(epoch)`: jumps to `epoch`, by the closed form where there is one. */
export const STEP_TO: unique symbol = Symbol('LRScheduler.stepTo');
/** Checks a state dict completely and returns the function that applies it. */
export const PARSE_STATE_DICT: unique symbol = Symbol('LRScheduler.parseStateDict');

export abstract class LRScheduler {
  readonly optimizer: SchedulableOptimizer;
  /** Each group's `initialLr` when the scheduler was created: what factors multiply. */
  baseLrs: number[] = [];
  /** The step index of the current lr (torch's `last_epoch`): 0 after construction. */
  lastEpoch = -1;
  /** torch's `_step_count`: 1 after construction, +1 per step(). */
  protected stepCount = 0;
  protected lastLrs: number[] = [];

  /**
   * `fields` are assigned to `this` before the initial step. torch subclasses set their
   * attributes before calling `super().__init__()`, which already steps; in JavaScript `this`
   * does not exist before `super()` returns, so a subclass hands the state its `computeLr()`
   * needs to this constructor instead, and declares those fields with `declare`.
   */
  protected constructor(optimizer: SchedulableOptimizer, options: SchedulerOptions = {}, fields: object = {}) {
    const name = new.target.name;
    checkOptimizer(optimizer, name);
    const opts = checkOptions(options, `${name}: options`, ['lastEpoch']);
    const lastEpoch = checkInteger(opts.lastEpoch ?? -1, `${name}: lastEpoch`, { min: -1 });
    const groups = optimizer.paramGroups;
    if (lastEpoch !== -1) {
      groups.forEach((g, i) => {
        if (g.initialLr === undefined) {
          throw new Error(
            `${name}: optimizer.paramGroups[${i}] has no initialLr; resuming at lastEpoch ${lastEpoch} needs the ` +
              `optimizer's state dict (with initial_lr) loaded first`,
          );
        }
      });
    }
    this.optimizer = optimizer;
    Object.assign(this, fields);

    // Nothing is left changed if the first step throws (e.g. a lambda returns NaN).
    const saved = groups.map((g) => ({ lr: g.lr, initialLr: g.initialLr, own: Object.hasOwn(g, 'initialLr') }));
    try {
      // torch's group.setdefault('initial_lr', group['lr']): a group another scheduler
      // already set keeps its value (SequentialLR relies on this).
      if (lastEpoch === -1) for (const g of groups) g.initialLr ??= g.lr;
      this.baseLrs = groups.map((g) => g.initialLr as number);
      this.lastEpoch = lastEpoch;
      this[INITIAL_STEP]();
    } catch (e) {
      groups.forEach((g, i) => {
        g.lr = saved[i].lr;
        if (saved[i].own) g.initialLr = saved[i].initialLr;
        else delete g.initialLr;
      });
      throw e;
    }
    hookOptimizerStep(optimizer);
  }

  /**
   * The lrs of the step being taken (torch's chainable `get_lr()`): `this.lastEpoch` has
   * already moved. Recursive schedules read the groups' current lr.
   */
  protected abstract computeLr(): number[];

  /** The lrs at `this.lastEpoch` from the closed form, where the schedule has one. */
  protected closedFormLr(): number[] | undefined {
    return undefined;
  }

  /** Advances the schedule one step and writes each group's lr. */
  step(): void {
    this.#advance(undefined);
  }

  /** The lrs the last step set, one per param group. */
  getLastLr(): number[] {
    return [...this.lastLrs];
  }

  /**
   * torch's `get_lr()`: what the schedule's rule gives for the current state. For recursive
   * schedules (LinearLR, CosineAnnealingLR) that is the *next* value of the recursion, which
   * is why torch warns when it is called outside step(); so does this.
   */
  getLr(): number[] {
    warnOnce(
      'FUSED_OPTIM_GET_LR',
      'To get the last learning rate computed by the scheduler, use scheduler.getLastLr(); getLr() recomputes the ' +
        "schedule's rule and, for recursive schedules, gives the next value",
    );
    return this.computeLr();
  }

  stateDict(): SchedulerStateDict {
    return this.baseStateDict();
  }

  /**
   * Restores the schedule (torch's `load_state_dict`); checks the whole dict before changing
   * anything. Like torch it does not touch the optimizer: load the optimizer's state dict too,
   * which restores each group's lr and initial_lr.
   */
  loadStateDict(stateDict: SchedulerStateDict): void {
    this[PARSE_STATE_DICT](stateDict, `${this.constructor.name}.loadStateDict`)();
  }

  protected baseStateDict(): LRSchedulerStateDict {
    return {
      base_lrs: [...this.baseLrs],
      last_epoch: this.lastEpoch,
      verbose: false,
      _step_count: this.stepCount,
      _get_lr_called_within_step: false,
      _last_lr: [...this.lastLrs],
    };
  }

  [INITIAL_STEP](): void {
    const saved = this.stepCount;
    this.stepCount = 0;
    try {
      this.step();
    } catch (e) {
      this.stepCount = saved;
      throw e;
    }
    // torch sets optimizer._step_count = 0 here: order is checked from this point on.
    optimizerStepCounter(this.optimizer).count = 0;
  }

  [STEP_TO](epoch: number): void {
    this.#advance(epoch);
  }

  [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    if (stateDict === null || typeof stateDict !== 'object' || Array.isArray(stateDict)) {
      throw new TypeError(`${where}: expected a state dict object, got ${describe(stateDict)}`);
    }
    const sd = stateDict as Record<string, unknown>;
    const baseLrs = checkNumberArray(sd.base_lrs, `${where}: base_lrs`, this.baseLrs.length, { min: 0 });
    const lastEpoch = checkInteger(sd.last_epoch, `${where}: last_epoch`, { min: -1 });
    const stepCount = checkInteger(sd._step_count, `${where}: _step_count`, { min: 0 });
    const lastLrs = checkNumberArray(sd._last_lr, `${where}: _last_lr`, this.lastLrs.length, { min: 0 });
    return () => {
      this.baseLrs = baseLrs;
      this.lastEpoch = lastEpoch;
      this.stepCount = stepCount;
      this.lastLrs = lastLrs;
    };
  }

  // torch's step(epoch=None): the order check, then the chainable rule (or the closed form
  // when an epoch is given), then the write. A rule that throws leaves everything as it was.
  #advance(epoch: number | undefined): void {
    if (this.stepCount === 1) this.#checkStepOrder();
    const saved = { stepCount: this.stepCount, lastEpoch: this.lastEpoch };
    this.stepCount += 1;
    let values: number[];
    try {
      if (epoch === undefined) {
        this.lastEpoch += 1;
        values = this.computeLr();
      } else {
        this.lastEpoch = epoch;
        values = this.closedFormLr() ?? this.computeLr();
      }
      this.#checkLrs(values);
    } catch (e) {
      this.stepCount = saved.stepCount;
      this.lastEpoch = saved.lastEpoch;
      throw e;
    }
    // zip(param_groups, values), as torch: a group added after the scheduler keeps its lr.
    const groups = this.optimizer.paramGroups;
    const n = Math.min(groups.length, values.length);
    for (let i = 0; i < n; i++) groups[i].lr = values[i];
    this.lastLrs = groups.map((g) => g.lr);
  }

  #checkLrs(values: unknown): asserts values is number[] {
    const name = this.constructor.name;
    if (!Array.isArray(values))
      throw new TypeError(`${name}: computeLr() must return an array of numbers, got ${describe(values)}`);
    values.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new RangeError(
          `${name}: the lr computed for param group ${i} at step ${this.lastEpoch} is ${describe(v)}; it must be a finite number >= 0`,
        );
      }
    });
  }

  #checkStepOrder(): void {
    if (!isStepHooked(this.optimizer)) {
      warnOnce(
        'FUSED_OPTIM_STEP_REPLACED',
        'optimizer.step() was replaced after the learning-rate scheduler was created, so the scheduler cannot check ' +
          'the call order. Make sure to call optimizer.step() before scheduler.step().',
      );
    } else if (optimizerStepCounter(this.optimizer).count < 1) {
      warnOnce(
        'FUSED_OPTIM_SCHEDULER_BEFORE_OPTIMIZER',
        'Detected a call of scheduler.step() before optimizer.step(). Call them in the opposite order, ' +
          'optimizer.step() first, as PyTorch 1.1.0 and later expect: otherwise the first value of the ' +
          'learning-rate schedule is skipped.',
      );
    }
  }
}

/** Throws unless `optimizer` is an Optimizer whose groups have valid lrs. */
export function checkOptimizer(optimizer: unknown, name: string): asserts optimizer is SchedulableOptimizer {
  if (!(optimizer instanceof Optimizer)) {
    throw new TypeError(`${name}: optimizer must be an Optimizer (e.g. AdamW), got ${describe(optimizer)}`);
  }
  (optimizer.paramGroups as ParamGroup[]).forEach((g, i) => {
    checkNumber(g.lr, `${name}: optimizer.paramGroups[${i}].lr`, { min: 0 });
    if (g.initialLr !== undefined)
      checkNumber(g.initialLr, `${name}: optimizer.paramGroups[${i}].initialLr`, { min: 0 });
  });
}
