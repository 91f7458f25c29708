// Scheduler behaviour beyond the torch sequences: construction, the step-order warning,
// getLr/getLastLr, resuming, state-dict round trips, that the lr reaches the update, any
// Optimizer subclass, and bad input (rejected before anything changes).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AdamW,
  CosineAnnealingLR,
  LambdaLR,
  type LRScheduler,
  LinearLR,
  Optimizer,
  Parameter,
  type SchedulableGroup,
  SequentialLR,
  Tensor,
  TransformerLR,
  constantWithWarmup,
  cosineWithWarmup,
  inverseSqrtWithWarmup,
  linearWarmup,
} from '../src/index';
import { randn, rng } from './support/random';

function params(n: number, size = 3): Parameter[] {
  return Array.from(
    { length: n },
    (_, i) => new Parameter(Tensor.from(new Float32Array(size).fill(i + 1)), { name: `w${i}` }),
  );
}

function adamw(baseLrs = [1, 0.5]): AdamW {
  return new AdamW(
    baseLrs.map((lr, i) => ({ params: params(1).map((p) => ((p.name = `g${i}`), p)), lr })),
    { weightDecay: 0 },
  );
}

const seedFactor = (s: number, dModel: number, warmup: number, factor = 1) => {
  const t = Math.max(s, 1);
  return factor * dModel ** -0.5 * Math.min(t ** -0.5, t * warmup ** -1.5);
};

/** A minimal Optimizer subclass written in JavaScript: records the lrs it is stepped with. */
class RecordingOptimizer extends Optimizer<SchedulableGroup> {
  seen: number[][] = [];
  constructor(ps: Parameter[], lr: number) {
    super({ lr });
    this.initGroups(ps);
  }
  step(): void {
    this.seen.push(this.paramGroups.map((g) => g.lr));
  }
  protected checkGroup(g: SchedulableGroup): SchedulableGroup {
    return g;
  }
  protected bindGroup(): void {}
  protected bindGrad(): void {}
}

// The step-order and getLr() warnings have their own file; keep this one's output quiet.
beforeEach(() => {
  vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('LRScheduler construction and stepping', () => {
  it('records initialLr and performs the initial step (lastEpoch -1 -> 0)', () => {
    const opt = adamw([1, 0.5]);
    expect(opt.paramGroups[0].initialLr).toBeUndefined();
    const sched = new TransformerLR(opt, { dModel: 512, warmupSteps: 100 });
    expect(opt.paramGroups.map((g) => g.initialLr)).toEqual([1, 0.5]);
    expect(sched.baseLrs).toEqual([1, 0.5]);
    expect(sched.lastEpoch).toBe(0);
    const f0 = seedFactor(0, 512, 100);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([1 * f0, 0.5 * f0]);
    expect(sched.getLastLr()).toEqual([1 * f0, 0.5 * f0]);
    expect(sched.stateDict()).toMatchObject({
      last_epoch: 0,
      _step_count: 1,
      base_lrs: [1, 0.5],
      d_model: 512,
      warmup_steps: 100,
      factor: 1,
    });
    expect(opt.stateDict().param_groups.map((g) => g.initial_lr)).toEqual([1, 0.5]);
  });

  it('step() sets lr = initialLr * lambda(lastEpoch); warmupSteps defaults to 4000, factor to 1', () => {
    const opt = adamw([2, 1]);
    const sched = new TransformerLR(opt, { dModel: 64 });
    expect([sched.dModel, sched.warmupSteps, sched.factor]).toEqual([64, 4000, 1]);
    for (let s = 1; s <= 10; s++) {
      opt.step();
      sched.step();
      expect(sched.lastEpoch).toBe(s);
      expect(opt.paramGroups.map((g) => g.lr)).toEqual([2 * seedFactor(s, 64, 4000), 1 * seedFactor(s, 64, 4000)]);
    }
  });

  it('keeps an initialLr that is already set (torch setdefault) and ignores the current lr', () => {
    const opt = adamw([1, 1]);
    opt.paramGroups[0].initialLr = 3;
    opt.paramGroups[0].lr = 0.123;
    new LambdaLR(opt, (s) => 0.5 ** s);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([3, 1]);
  });

  it('takes one lambda per group', () => {
    const opt = adamw([1, 0.5]);
    const sched = new LambdaLR(opt, [(s) => 0.5 ** s, (s) => s + 1]);
    opt.step();
    sched.step();
    opt.step();
    sched.step();
    expect(sched.getLastLr()).toEqual([0.25, 1.5]);
    expect(sched.lrLambdas).toHaveLength(2);
  });

  it('getLastLr() returns a copy; getLr() gives the rule without stepping', () => {
    const opt = adamw([1, 0.5]);
    const sched = new LambdaLR(opt, (s) => 0.5 ** s);
    const last = sched.getLastLr();
    last[0] = 99;
    expect(sched.getLastLr()).toEqual([1, 0.5]);
    expect(sched.getLr()).toEqual([1, 0.5]);
    expect(sched.lastEpoch).toBe(0);
  });

  it('warmup factories return LambdaLRs', () => {
    const opt = adamw();
    for (const s of [
      linearWarmup(opt, { warmupSteps: 2, totalSteps: 10 }),
      cosineWithWarmup(opt, { warmupSteps: 2, totalSteps: 10 }),
      constantWithWarmup(opt, { warmupSteps: 2 }),
      inverseSqrtWithWarmup(opt, { warmupSteps: 2 }),
    ]) {
      expect(s).toBeInstanceOf(LambdaLR);
    }
  });

  it('resumes from lastEpoch when initialLr is set (CosineAnnealingLR uses its closed form first)', () => {
    const a = adamw([1, 0.5]);
    const running = new CosineAnnealingLR(a, { tMax: 50, etaMin: 0.01 });
    for (let s = 0; s < 11; s++) running.step();
    const b = adamw([1, 0.5]);
    b.paramGroups.forEach((g, i) => (g.initialLr = [1, 0.5][i]));
    const resumed = new CosineAnnealingLR(b, { tMax: 50, etaMin: 0.01, lastEpoch: 10 });
    expect(resumed.lastEpoch).toBe(11);
    resumed.getLastLr().forEach((lr, i) => expect(lr).toBeCloseTo(running.getLastLr()[i], 12));
  });

  it('works with any Optimizer subclass, and the lr it sets is the one the step sees', () => {
    const opt = new RecordingOptimizer(params(2), 0.5);
    const sched = new LambdaLR(opt, (s) => s + 1);
    for (let s = 0; s < 3; s++) {
      opt.step();
      sched.step();
    }
    expect(opt.seen).toEqual([[0.5], [1], [1.5]]);
  });

  it('a group added later keeps its own lr (torch zips groups with values)', () => {
    const opt = adamw([1]);
    const sched = new LambdaLR(opt, (s) => 0.5 ** s);
    opt.addParamGroup({ params: params(1), lr: 7 });
    opt.step();
    sched.step();
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.5, 7]);
    expect(sched.getLastLr()).toEqual([0.5, 7]);
  });
});

describe('the scheduled lr drives the fused update', () => {
  it('AdamW under TransformerLR matches AdamW with the same lrs set by hand, bit for bit', async () => {
    const next = rng(7);
    const inits = [randn(5000, next), randn(70000, next)];
    const make = () => {
      const ps = inits.map((v, i) => new Parameter(Tensor.from(v), { name: `p${i}` }));
      return {
        ps,
        opt: new AdamW(
          [
            { params: [ps[0]], lr: 1 },
            { params: [ps[1]], lr: 0.5, weightDecay: 0 },
          ],
          { weightDecay: 0.1 },
        ),
      };
    };
    const a = make();
    const b = make();
    const sched = new TransformerLR(a.opt, { dModel: 128, warmupSteps: 5 });
    for (let s = 0; s < 12; s++) {
      const grads = inits.map((v) => randn(v.length, next, 0.1));
      for (const m of [a, b]) m.ps.forEach((p, i) => (p.grad = Tensor.from(grads[i])));
      b.opt.paramGroups.forEach((g, i) => (g.lr = [1, 0.5][i] * seedFactor(s, 128, 5)));
      if (s % 2) await a.opt.stepAsync();
      else a.opt.step();
      b.opt.step();
      sched.step();
    }
    a.ps.forEach((p, i) => expect(p.data.toFloat32Array()).toEqual(b.ps[i].data.toFloat32Array()));
    // The schedule really moved the params differently from a constant lr.
    expect(a.ps[0].data.toFloat32Array()).not.toEqual(inits[0]);
  });
});

// Save mid-schedule (optimizer + scheduler), rebuild both, load, and continue: the lrs must
// be identical to the run that never stopped. The scheduler dict goes through JSON.
describe('state dict round trip mid-schedule', () => {
  const kinds: Array<[string, (opt: AdamW) => LRScheduler]> = [
    ['TransformerLR', (o) => new TransformerLR(o, { dModel: 256, warmupSteps: 80, factor: 2 })],
    ['LambdaLR (per group)', (o) => new LambdaLR(o, [(s) => 1 / (1 + s), (s) => 0.99 ** s])],
    ['LinearLR', (o) => new LinearLR(o, { startFactor: 0.2, totalIters: 200 })],
    ['CosineAnnealingLR', (o) => new CosineAnnealingLR(o, { tMax: 70, etaMin: 0.001 })],
    [
      'SequentialLR',
      (o) =>
        new SequentialLR(o, {
          schedulers: [new LinearLR(o, { startFactor: 0.1, totalIters: 30 }), new CosineAnnealingLR(o, { tMax: 90 })],
          milestones: [150],
        }),
    ],
    ['cosineWithWarmup', (o) => cosineWithWarmup(o, { warmupSteps: 50, totalSteps: 250 })],
    ['inverseSqrtWithWarmup', (o) => inverseSqrtWithWarmup(o, { warmupSteps: 40 })],
  ];

  for (const [name, make] of kinds) {
    it(name, () => {
      const optA = adamw([1, 0.25]);
      const a = make(optA);
      for (let s = 0; s < 120; s++) {
        optA.step();
        a.step();
      }
      const optState = structuredClone(optA.stateDict());
      const schedState = JSON.parse(JSON.stringify(a.stateDict()));

      const optB = adamw([1, 0.25]);
      const b = make(optB);
      optB.loadStateDict(optState);
      b.loadStateDict(schedState);
      expect(b.stateDict()).toEqual(a.stateDict());
      expect(b.getLastLr()).toEqual(a.getLastLr());
      for (let s = 0; s < 150; s++) {
        optA.step();
        optB.step();
        a.step();
        b.step();
        expect(optB.paramGroups.map((g) => g.lr)).toEqual(optA.paramGroups.map((g) => g.lr));
      }
      expect(b.lastEpoch).toBe(270);
    });
  }

  it('TransformerLR restores its shape from the dict', () => {
    const a = new TransformerLR(adamw(), { dModel: 512, warmupSteps: 10, factor: 3 });
    const b = new TransformerLR(adamw(), { dModel: 64 });
    b.loadStateDict(a.stateDict());
    expect([b.dModel, b.warmupSteps, b.factor]).toEqual([512, 10, 3]);
  });
});

describe('bad input throws a clear error and changes nothing', () => {
  const untouched = (opt: AdamW, lrs = [1, 0.5]) => {
    expect(opt.paramGroups.map((g) => g.lr)).toEqual(lrs);
    expect(opt.paramGroups.map((g) => g.initialLr)).toEqual([undefined, undefined]);
    expect(Object.hasOwn(opt, 'step')).toBe(false);
  };

  it('TransformerLR: non-positive or non-integer dModel / warmupSteps, bad factor', () => {
    const opt = adamw();
    const bad: Array<[Record<string, unknown>, ErrorConstructor, RegExp]> = [
      [{}, TypeError, /options\.dModel is required/],
      [{ dModel: 0 }, RangeError, /options\.dModel must be >= 1, got 0/],
      [{ dModel: -512 }, RangeError, /options\.dModel must be >= 1, got -512/],
      [{ dModel: NaN }, RangeError, /options\.dModel must be an integer, got NaN/],
      [{ dModel: '512' }, TypeError, /options\.dModel must be a positive integer, got "512"/],
      [{ dModel: 512, warmupSteps: 0 }, RangeError, /options\.warmupSteps must be >= 1, got 0/],
      [{ dModel: 512, warmupSteps: -4000 }, RangeError, /options\.warmupSteps must be >= 1/],
      [{ dModel: 512, warmupSteps: 1.5 }, RangeError, /options\.warmupSteps must be an integer, got 1.5/],
      [{ dModel: 512, factor: 0 }, RangeError, /options\.factor must be > 0, got 0/],
      [{ dModel: 512, factor: Infinity }, RangeError, /options\.factor must be a finite number/],
      [{ dModel: 512, lastEpoch: -2 }, RangeError, /lastEpoch must be >= -1/],
    ];
    for (const [options, type, message] of bad) {
      const call = () => new TransformerLR(opt, options as never);
      expect(call, JSON.stringify(options)).toThrow(type);
      expect(call, JSON.stringify(options)).toThrow(message);
    }
    expect(() => new TransformerLR(opt, null as never)).toThrow(
      /TransformerLR: options must be an options object, got null/,
    );
    expect(() => new TransformerLR({} as never, { dModel: 8 })).toThrow(
      new TypeError('TransformerLR: optimizer must be an Optimizer (e.g. AdamW), got an object'),
    );
    untouched(opt);
  });

  it('LambdaLR: a lambda returning NaN, a negative factor or a non-number', () => {
    const opt = adamw();
    expect(() => new LambdaLR(opt, () => NaN)).toThrow(
      new RangeError('LambdaLR: lrLambda returned NaN at step 0; the factor must be a finite number >= 0'),
    );
    expect(() => new LambdaLR(opt, [() => 1, () => -0.5])).toThrow(
      new RangeError('LambdaLR: lrLambda[1] returned -0.5 at step 0; the factor must be a finite number >= 0'),
    );
    expect(() => new LambdaLR(opt, () => Infinity)).toThrow(RangeError);
    expect(() => new LambdaLR(opt, (() => '1') as never)).toThrow(
      new TypeError('LambdaLR: lrLambda returned "1" at step 0; it must return a number'),
    );
    untouched(opt);
  });

  it('LambdaLR: a lambda that goes bad mid-schedule leaves the step undone', () => {
    const opt = adamw();
    const sched = new LambdaLR(opt, (s) => (s === 3 ? NaN : 1 / (s + 1)));
    for (let s = 0; s < 2; s++) {
      opt.step();
      sched.step();
    }
    const before = { lrs: opt.paramGroups.map((g) => g.lr), state: sched.stateDict() };
    opt.step();
    expect(() => sched.step()).toThrow(
      new RangeError('LambdaLR: lrLambda returned NaN at step 3; the factor must be a finite number >= 0'),
    );
    expect(opt.paramGroups.map((g) => g.lr)).toEqual(before.lrs);
    expect(sched.stateDict()).toEqual(before.state);
    expect(sched.lastEpoch).toBe(2);
  });

  it('LambdaLR: a lambda list of the wrong length, or not functions', () => {
    const opt = adamw();
    expect(() => new LambdaLR(opt, [() => 1])).toThrow(
      new RangeError('LambdaLR: expected 2 lr lambdas (one per param group), got 1'),
    );
    expect(() => new LambdaLR(opt, [() => 1, () => 1, () => 1])).toThrow(
      /expected 2 lr lambdas \(one per param group\), got 3/,
    );
    expect(() => new LambdaLR(opt, [() => 1, 2] as never)).toThrow(
      new TypeError('LambdaLR: lrLambda[1] must be a function, got 2'),
    );
    expect(() => new LambdaLR(opt, 0.5 as never)).toThrow(TypeError);
    untouched(opt);
  });

  it('LinearLR and CosineAnnealingLR options', () => {
    const opt = adamw();
    expect(() => new LinearLR(opt, { startFactor: 0 })).toThrow(
      new RangeError('LinearLR: options.startFactor must be > 0, got 0'),
    );
    expect(() => new LinearLR(opt, { startFactor: 1.5 })).toThrow(/startFactor must be in \(0, 1\], got 1.5/);
    expect(() => new LinearLR(opt, { endFactor: -0.1 })).toThrow(/endFactor must be >= 0/);
    expect(() => new LinearLR(opt, { endFactor: 2 })).toThrow(/endFactor must be in \[0, 1\]/);
    expect(() => new LinearLR(opt, { totalIters: 0 })).toThrow(/totalIters must be >= 1, got 0/);
    expect(() => new LinearLR(opt, { totalIters: 2.5 })).toThrow(/totalIters must be an integer/);
    expect(() => new CosineAnnealingLR(opt, {} as never)).toThrow(/options\.tMax is required/);
    expect(() => new CosineAnnealingLR(opt, { tMax: 0 })).toThrow(/tMax must be >= 1, got 0/);
    expect(() => new CosineAnnealingLR(opt, { tMax: 10, etaMin: -1 })).toThrow(/etaMin must be >= 0, got -1/);
    untouched(opt);
  });

  it('SequentialLR options', () => {
    const opt = adamw();
    const s1 = new LinearLR(opt, { totalIters: 3 });
    const s2 = new CosineAnnealingLR(opt, { tMax: 10 });
    const s3 = new LambdaLR(opt, () => 1);
    const lrs = opt.paramGroups.map((g) => g.lr);
    expect(() => new SequentialLR(opt, { schedulers: [s1, s2], milestones: [] })).toThrow(
      /milestones must have one entry fewer than schedulers \(1\), got 0/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [s1, s2, s3], milestones: [5, 5] })).toThrow(
      /milestones must be increasing, got 5 then 5/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [s1, s2], milestones: [0] })).toThrow(
      /milestones\[0\] must be >= 1/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [s1, new LinearLR(adamw(), {})], milestones: [3] })).toThrow(
      /schedulers\[1\] drives a different optimizer/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [s1, {}] as never, milestones: [3] })).toThrow(
      /schedulers\[1\] is not a scheduler/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [s1, s2, s1], milestones: [5, 6] })).toThrow(
      /lists a scheduler twice/,
    );
    expect(() => new SequentialLR(opt, { schedulers: [], milestones: [] })).toThrow(/non-empty array/);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual(lrs);
    expect([s1.lastEpoch, s2.lastEpoch, s3.lastEpoch]).toEqual([0, 0, 0]);
  });

  it('warmup factories', () => {
    const opt = adamw();
    expect(() => linearWarmup(opt, { warmupSteps: -1, totalSteps: 10 })).toThrow(
      new RangeError('linearWarmup: options.warmupSteps must be >= 0, got -1'),
    );
    expect(() => linearWarmup(opt, { warmupSteps: 20, totalSteps: 10 })).toThrow(
      /totalSteps \(10\) must be >= options\.warmupSteps \(20\)/,
    );
    expect(() => linearWarmup(opt, { warmupSteps: 2 } as never)).toThrow(/options\.totalSteps is required/);
    expect(() => cosineWithWarmup(opt, { warmupSteps: 2, totalSteps: 10, numCycles: 0 })).toThrow(
      /numCycles must be > 0/,
    );
    expect(() => constantWithWarmup(opt, {} as never)).toThrow(/options\.warmupSteps is required/);
    expect(() => inverseSqrtWithWarmup(opt, { warmupSteps: 5, timescale: 0 })).toThrow(/timescale must be >= 1, got 0/);
    untouched(opt);
  });

  it('resuming without initialLr', () => {
    const opt = adamw();
    expect(() => new LinearLR(opt, { lastEpoch: 5 })).toThrow(
      /paramGroups\[0\] has no initialLr; resuming at lastEpoch 5/,
    );
    untouched(opt);
  });

  it('loadStateDict rejects a dict that does not fit, before changing anything', () => {
    const opt = adamw();
    const sched = new CosineAnnealingLR(opt, { tMax: 10 });
    sched.step();
    const good = sched.stateDict();
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...good, base_lrs: [1] }, /base_lrs has 1 entries but 2 were expected/],
      [{ ...good, last_epoch: 'x' }, /last_epoch must be an integer, got "x"/],
      [{ ...good, _step_count: undefined }, /_step_count must be an integer, got undefined/],
      [{ ...good, _last_lr: [1, NaN] }, /_last_lr\[1\] must be a finite number/],
      [{ ...good, T_max: 0 }, /T_max must be >= 1, got 0/],
    ];
    for (const [sd, message] of bad) expect(() => sched.loadStateDict(sd as never)).toThrow(message);
    expect(() => sched.loadStateDict(null as never)).toThrow(
      /CosineAnnealingLR\.loadStateDict: expected a state dict object, got null/,
    );
    expect(sched.stateDict()).toEqual(good);

    const lambda = new LambdaLR(adamw(), () => 1);
    expect(() => lambda.loadStateDict({ ...lambda.stateDict(), lr_lambdas: [null] })).toThrow(
      /lr_lambdas has 1 entries but the scheduler has 2/,
    );

    const o = adamw();
    const seq = new SequentialLR(o, {
      schedulers: [new LinearLR(o, {}), new CosineAnnealingLR(o, { tMax: 5 })],
      milestones: [4],
    });
    const seqState = seq.stateDict();
    const broken = structuredClone(seqState);
    broken._schedulers[1].T_max = -1;
    broken.last_epoch = 3;
    expect(() => seq.loadStateDict(broken)).toThrow(/_schedulers\[1\]: T_max must be >= 1/);
    expect(seq.stateDict()).toEqual(seqState);
  });
});
