// SequentialLR: hands the schedule from one scheduler to the next at milestone steps, as
// torch 1.13's SequentialLR, including its quirks (the exact lrs depend on them): the
// constructor resets every group to initial_lr and undoes the initial step of each
// scheduler, then re-runs the first one's initial step; at a milestone the next scheduler
// restarts from step 0 by its closed form when it has one (torch's deprecated step(0)).
import { checkInteger, checkNumberArray, checkOptions, describe } from '../checks';
import {
  INITIAL_STEP,
  LRScheduler,
  PARSE_STATE_DICT,
  STEP_TO,
  type SchedulableOptimizer,
  type SchedulerStateDict,
  checkOptimizer,
} from './lr_scheduler';

export interface SequentialLROptions {
  /** The schedulers, in order, all built on this optimizer. */
  schedulers: readonly LRScheduler[];
  /** The steps at which the next scheduler takes over: schedulers.length - 1 increasing positive integers. */
  milestones: readonly number[];
}

export interface SequentialLRStateDict extends SchedulerStateDict {
  _milestones: number[];
  _schedulers: SchedulerStateDict[];
}

export class SequentialLR extends LRScheduler {
  declare readonly schedulers: readonly LRScheduler[];
  declare readonly milestones: readonly number[];

  constructor(optimizer: SchedulableOptimizer, options: SequentialLROptions) {
    const name = new.target.name;
    checkOptimizer(optimizer, name);
    const opts = checkOptions(options, `${name}: options`, ['schedulers', 'milestones']);
    super(optimizer, {}, checkSequence(optimizer, opts.schedulers, opts.milestones, name));
  }

  /** Steps the scheduler whose turn it is. */
  override step(): void {
    const saved = this.lastEpoch;
    this.lastEpoch += 1;
    const idx = bisectRight(this.milestones, this.lastEpoch);
    const scheduler = this.schedulers[idx];
    try {
      if (idx > 0 && this.milestones[idx - 1] === this.lastEpoch) scheduler[STEP_TO](0);
      else scheduler.step();
    } catch (e) {
      this.lastEpoch = saved;
      throw e;
    }
    this.lastLrs = scheduler.getLastLr();
  }

  /** The rule of the scheduler whose turn it is (torch's SequentialLR has no get_lr()). */
  override getLr(): number[] {
    return this.schedulers[bisectRight(this.milestones, this.lastEpoch)].getLr();
  }

  protected computeLr(): number[] {
    return this.schedulers[bisectRight(this.milestones, this.lastEpoch)].getLr();
  }

  override stateDict(): SequentialLRStateDict {
    return {
      _milestones: [...this.milestones],
      last_epoch: this.lastEpoch,
      _last_lr: [...this.lastLrs],
      _schedulers: this.schedulers.map((s) => s.stateDict()),
    };
  }

  override [PARSE_STATE_DICT](stateDict: unknown, where: string): () => void {
    if (stateDict === null || typeof stateDict !== 'object' || Array.isArray(stateDict)) {
      throw new TypeError(`${where}: expected a state dict object, got ${describe(stateDict)}`);
    }
    const sd = stateDict as Record<string, unknown>;
    const milestones = checkMilestones(sd._milestones, this.schedulers.length, `${where}: _milestones`);
    const lastEpoch = checkInteger(sd.last_epoch, `${where}: last_epoch`, { min: -1 });
    const lastLrs = checkNumberArray(sd._last_lr, `${where}: _last_lr`, this.lastLrs.length, { min: 0 });
    const saved = sd._schedulers;
    if (!Array.isArray(saved))
      throw new TypeError(`${where}: _schedulers must be an array of state dicts, got ${describe(saved)}`);
    if (saved.length !== this.schedulers.length) {
      throw new RangeError(
        `${where}: _schedulers has ${saved.length} entries but the SequentialLR has ${this.schedulers.length} schedulers`,
      );
    }
    const commits = this.schedulers.map((s, i) => s[PARSE_STATE_DICT](saved[i], `${where}: _schedulers[${i}]`));
    return () => {
      Object.assign(this, { milestones });
      this.lastEpoch = lastEpoch;
      this.lastLrs = lastLrs;
      for (const commit of commits) commit();
    };
  }

  override [INITIAL_STEP](): void {
    const groups = this.optimizer.paramGroups;
    const saved = { lrs: groups.map((g) => g.lr), epochs: this.schedulers.map((s) => s.lastEpoch) };
    this.lastEpoch = 0; // torch: last_epoch + 1, with last_epoch = -1
    // Reset learning rates back to initial values.
    for (const g of groups) g.lr = g.initialLr as number;
    // "Undo" the step performed by other schedulers.
    for (const s of this.schedulers) s.lastEpoch -= 1;
    try {
      // Perform the initial step for only the first scheduler.
      this.schedulers[0][INITIAL_STEP]();
    } catch (e) {
      groups.forEach((g, i) => (g.lr = saved.lrs[i]));
      this.schedulers.forEach((s, i) => (s.lastEpoch = saved.epochs[i]));
      throw e;
    }
    this.lastLrs = this.schedulers[0].getLastLr();
  }
}

function checkSequence(optimizer: SchedulableOptimizer, schedulers: unknown, milestones: unknown, name: string) {
  if (!Array.isArray(schedulers) || schedulers.length === 0) {
    throw new TypeError(
      `${name}: options.schedulers must be a non-empty array of schedulers, got ${describe(schedulers)}`,
    );
  }
  schedulers.forEach((s, i) => {
    if (!(s instanceof LRScheduler))
      throw new TypeError(`${name}: options.schedulers[${i}] is not a scheduler, got ${describe(s)}`);
    if (s instanceof SequentialLR)
      throw new TypeError(`${name}: options.schedulers[${i}] is a SequentialLR; they do not nest`);
    if (s.optimizer !== optimizer) {
      throw new Error(
        `${name}: options.schedulers[${i}] drives a different optimizer; every scheduler must belong to the one passed in`,
      );
    }
  });
  if (new Set(schedulers).size !== schedulers.length)
    throw new Error(`${name}: options.schedulers lists a scheduler twice`);
  optimizer.paramGroups.forEach((g, i) => {
    if (g.initialLr === undefined)
      throw new Error(
        `${name}: optimizer.paramGroups[${i}] has no initialLr (it was added after the schedulers were created)`,
      );
  });
  return {
    schedulers: [...schedulers] as LRScheduler[],
    milestones: checkMilestones(milestones, schedulers.length, `${name}: options.milestones`),
  };
}

// torch only checks the count; bisect_right needs them sorted, and a milestone at 0 would
// never restart its scheduler, so ask for increasing positive integers.
function checkMilestones(value: unknown, schedulers: number, what: string): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of integers, got ${describe(value)}`);
  if (value.length !== schedulers - 1) {
    throw new RangeError(`${what} must have one entry fewer than schedulers (${schedulers - 1}), got ${value.length}`);
  }
  const out = value.map((m, i) => checkInteger(m, `${what}[${i}]`, { min: 1 }));
  out.forEach((m, i) => {
    if (i > 0 && m <= out[i - 1]) throw new RangeError(`${what} must be increasing, got ${out[i - 1]} then ${m}`);
  });
  return out;
}

/** Python's bisect.bisect_right: the number of entries <= x in a sorted array. */
function bisectRight(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < sorted[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
