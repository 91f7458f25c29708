// Bad input to Parameter and AdamW (docs/design.md section 11): each is rejected with a clear error
// of the right class that names the parameter and the problem, and nothing is half applied:
// every param's bits, every grad, the hyperparameters and opt.stateDict() are identical
// after the rejected call, and the next good step matches a twin optimizer that never saw
// the bad call. Next to them, the positive behaviours the validation must not get in the
// way of: zeroGrad, skipped params, lr changes, addParamGroup, stepAsync, state dicts.
import { describe, expect, it } from 'vitest';
import { AdamW, type AdamWStateDict, type DType, Parameter, Tensor } from '../src/index';
import { bitsOf, expectSameBits } from './support/compare';
import { type ErrorClass, expectThrows } from './support/expect_throws';
import { randn, rng } from './support/random';
import { native } from '../src/native';

// ---------------------------------------------------------------------------------------
// Helpers

/** Raw bits of a tensor's values: fp32 as 32-bit patterns, half types as 16-bit ones. */
function tensorBits(t: Tensor): number[] {
  return t.dtype === 'float32' ? Array.from(bitsOf(t.toFloat32Array())) : Array.from(t.toBits());
}

function cloneTensor(t: Tensor): Tensor {
  return t.dtype === 'float32'
    ? Tensor.from(t.toFloat32Array(), { shape: t.shape, device: 'cpu' })
    : Tensor.from(t.toBits(), { dtype: t.dtype, shape: t.shape, device: 'cpu' });
}

/** A state dict with every Float32Array replaced by its bit patterns (so -0/NaN compare exactly). */
function sdBits(sd: AdamWStateDict): unknown {
  const state: Record<string, Record<string, unknown>> = {};
  for (const [k, s] of Object.entries(sd.state)) {
    state[k] = Object.fromEntries(
      Object.entries(s).map(([n, v]) => [n, v instanceof Float32Array ? Array.from(bitsOf(v)) : v]),
    );
  }
  return { state, param_groups: sd.param_groups };
}

function groupsOf(opt: AdamW): unknown[] {
  return opt.paramGroups.map(({ params, ...rest }) => ({
    ...rest,
    betas: Array.isArray(rest.betas) ? [...rest.betas] : rest.betas, // a copy: step() may replace the array
    params: params.map((p) => p.name),
  }));
}

async function expectRejects(promise: unknown, cls: ErrorClass, messages: RegExp[], what = ''): Promise<void> {
  expect(promise, `${what}: stepAsync must return a (rejected) Promise, not throw`).toBeInstanceOf(Promise);
  let error: unknown;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expect(error, `${what}: expected a ${cls.name}`).toBeInstanceOf(cls);
  for (const m of messages) expect((error as Error).message, what).toMatch(m);
}

interface Fixture {
  w: Parameter; // float32 [4, 8], group 0
  h: Parameter; // float16 [16], group 0
  b: Parameter; // bfloat16 [3, 5], group 1
  params: Parameter[];
  opt: AdamW;
  /** Gives every param a fresh grad (same sequence for fixtures of the same seed). */
  setGrads(): void;
}

/** Three params of the three dtypes in two groups, after `steps` good steps (state exists). */
function fixture(seed = 1, steps = 2): Fixture {
  const init = rng(seed);
  const w = new Parameter(Tensor.from(randn(32, init), { shape: [4, 8], device: 'cpu' }), { name: 'w' });
  const h = new Parameter(Tensor.from(randn(16, init), { dtype: 'float16', device: 'cpu' }), { name: 'h' });
  const b = new Parameter(Tensor.from(randn(15, init), { dtype: 'bfloat16', shape: [3, 5], device: 'cpu' }), {
    name: 'b',
  });
  const params = [w, h, b];
  const opt = new AdamW(
    [
      { params: [w, h], weightDecay: 0.01 },
      { params: [b], lr: 2e-3, weightDecay: 0 },
    ],
    { lr: 1e-3 },
  );
  const gradRng = rng(seed + 1000);
  const setGrads = () => {
    for (const p of params) {
      p.grad = Tensor.from(randn(p.data.numel, gradRng, 0.1), {
        dtype: p.data.dtype,
        shape: p.data.shape,
        device: 'cpu',
      });
    }
  };
  for (let s = 0; s < steps; s++) {
    setGrads();
    opt.step();
  }
  return { w, h, b, params, opt, setGrads };
}

function newParam(name: string, n = 6, dtype: DType = 'float32', seed = 99): Parameter {
  return new Parameter(Tensor.from(randn(n, rng(seed)), { dtype, device: 'cpu' }), { name });
}

interface Snapshot {
  values: Array<number[] | 'disposed'>;
  grads: Array<Tensor | null>;
  gradValues: Array<number[] | null>;
  groups: unknown[];
  state: unknown;
}

function snapshot(f: Fixture): Snapshot {
  return {
    values: f.params.map((p) => (p.data.disposed ? 'disposed' : tensorBits(p.data))),
    grads: f.params.map((p) => p.grad),
    gradValues: f.params.map((p) => (p.grad && !p.grad.disposed ? tensorBits(p.grad) : null)),
    groups: groupsOf(f.opt),
    state: sdBits(f.opt.stateDict()),
  };
}

function expectUnchanged(f: Fixture, before: Snapshot, what: string): void {
  const after = snapshot(f);
  f.params.forEach((p, i) => {
    expect(after.values[i], `${what}: values of param '${p.name}'`).toEqual(before.values[i]);
    expect(after.grads[i], `${what}: grad object of param '${p.name}'`).toBe(before.grads[i]);
    expect(after.gradValues[i], `${what}: grad values of param '${p.name}'`).toEqual(before.gradValues[i]);
  });
  expect(after.groups, `${what}: param groups`).toEqual(before.groups);
  expect(after.state, `${what}: optimizer state`).toEqual(before.state);
}

/** Params, hyperparameters and state of two fixtures are bit-identical. */
function expectSameAs(f: Fixture, twin: Fixture, what: string): void {
  f.params.forEach((p, i) =>
    expect(tensorBits(p.data), `${what}: param '${p.name}'`).toEqual(tensorBits(twin.params[i].data)),
  );
  expect(groupsOf(f.opt), `${what}: groups`).toEqual(groupsOf(twin.opt));
  expect(sdBits(f.opt.stateDict()), `${what}: state`).toEqual(sdBits(twin.opt.stateDict()));
}

interface RejectCase {
  /** Runs before the snapshot (e.g. breaks something the bad call then trips over). */
  prepare?: (f: Fixture) => void;
  /** The rejected call. With `async`, it must return a Promise that rejects. */
  bad: (f: Fixture) => unknown;
  async?: boolean;
  error: ErrorClass;
  message: RegExp[];
  /** Undoes `prepare` so the fixture can go on stepping next to its twin. */
  repair?: (f: Fixture) => void;
  /** Whether to compare the next good step with a twin (needs prepare undone by repair). */
  twin?: boolean;
  extra?: (f: Fixture) => void;
}

/** One test: the bad call throws the right error and changes nothing. */
function rejects(name: string, c: RejectCase): void {
  it(name, async () => {
    const f = fixture();
    const twin = c.twin === false ? undefined : fixture();
    c.prepare?.(f);
    const before = snapshot(f);
    if (c.async) await expectRejects(c.bad(f), c.error, c.message, name);
    else expectThrows(() => c.bad(f), c.error, c.message, name);
    expectUnchanged(f, before, name);
    c.extra?.(f);
    if (twin) {
      c.repair?.(f);
      f.setGrads();
      twin.setGrads();
      f.opt.step();
      twin.opt.step();
      expectSameAs(f, twin, `${name}: the next step`);
    }
  });
}

// ---------------------------------------------------------------------------------------

describe('Parameter: bad grads are rejected by the setter and change nothing', () => {
  rejects('grad of a different shape with the same element count', {
    bad: (f) => (f.w.grad = Tensor.zeros([8, 4], { device: 'cpu' })),
    error: RangeError,
    message: [/grad of param 'w'/, /shape \[8, 4\]/, /\[4, 8\]/],
  });
  rejects('grad with a different element count', {
    bad: (f) => (f.h.grad = Tensor.zeros([17], { dtype: 'float16', device: 'cpu' })),
    error: RangeError,
    message: [/param 'h'/, /shape \[17\]/, /\[16\]/],
  });
  rejects('float16 grad on a bfloat16 param', {
    bad: (f) => (f.b.grad = Tensor.zeros([3, 5], { dtype: 'float16', device: 'cpu' })),
    error: TypeError,
    message: [/param 'b'/, /float16/, /bfloat16/],
  });
  rejects('bfloat16 grad on a float32 param', {
    bad: (f) => (f.w.grad = Tensor.zeros([4, 8], { dtype: 'bfloat16', device: 'cpu' })),
    error: TypeError,
    message: [/param 'w'/, /bfloat16/, /float32/],
  });
  rejects('float16 grad on a float32 param', {
    bad: (f) => (f.w.grad = Tensor.zeros([4, 8], { dtype: 'float16', device: 'cpu' })),
    error: TypeError,
    message: [/param 'w'/, /float16/],
  });
  for (const [label, value] of [
    ['a Float32Array', new Float32Array(32)],
    ['undefined', undefined],
    ['a plain object', { shape: [4, 8], dtype: 'float32' }],
    ['a number', 0],
  ] as const) {
    rejects(`grad that is not a Tensor: ${label}`, {
      bad: (f) => (f.w.grad = value as unknown as Tensor),
      error: TypeError,
      message: [/param 'w'/, /must be a Tensor/],
    });
  }
  rejects("grad that is the addon's raw handle, not a Tensor", {
    bad: (f) => (f.w.grad = Tensor.zeros([4, 8], { device: 'cpu' }).handle as unknown as Tensor),
    error: TypeError,
    message: [/param 'w'/, /Tensor/],
  });
  rejects('a disposed grad', {
    bad: (f) => {
      const g = Tensor.zeros([4, 8], { device: 'cpu' });
      g.dispose();
      f.w.grad = g;
    },
    error: Error,
    message: [/grad of param 'w'/, /disposed/],
  });

  it('new Parameter rejects a disposed tensor and a non-Tensor', () => {
    const t = Tensor.zeros([3], { device: 'cpu' });
    t.dispose();
    expectThrows(() => new Parameter(t, { name: 'x' }), Error, [/disposed/]);
    expectThrows(() => new Parameter(new Float32Array(3) as unknown as Tensor), TypeError, [/Tensor/]);
  });
});

describe('step: tensors disposed after they were bound', () => {
  for (const mode of ['step', 'stepAsync'] as const) {
    rejects(`${mode}: a grad disposed after it was set names the param; no param (healthy ones included) changes`, {
      prepare: (f) => {
        f.setGrads(); // every param has a fresh grad, so w and b would move if anything ran
        f.h.grad!.dispose();
      },
      bad: (f) => (mode === 'step' ? f.opt.step() : f.opt.stepAsync()),
      async: mode === 'stepAsync',
      error: Error,
      message: [/param 'h'/, /disposed/],
      twin: false,
      extra: (f) => {
        // Recovers once the grad is replaced: one step, every param moves by exactly one step.
        const before = f.opt.stateDict();
        f.h.grad = Tensor.from(new Float32Array(16).fill(0.1), { dtype: 'float16', device: 'cpu' });
        f.opt.step();
        const after = f.opt.stateDict();
        for (const i of [0, 1, 2]) expect(after.state[i].step).toBe(before.state[i].step + 1);
      },
    });
    rejects(`${mode}: a param whose data was disposed names the param; the others do not change`, {
      prepare: (f) => {
        f.setGrads();
        f.b.data.dispose();
      },
      bad: (f) => (mode === 'step' ? f.opt.step() : f.opt.stepAsync()),
      async: mode === 'stepAsync',
      error: Error,
      message: [/param 'b'/, /disposed/],
      twin: false,
    });
  }

  it('constructing or extending an optimizer with a disposed param is an Error naming it', () => {
    const p = newParam('gone');
    p.data.dispose();
    expectThrows(() => new AdamW([p]), Error, [/'gone'/, /disposed/]);
    const f = fixture();
    const before = snapshot(f);
    expectThrows(() => f.opt.addParamGroup({ params: [p] }), Error, [/'gone'/, /disposed/]);
    expectUnchanged(f, before, 'addParamGroup with a disposed param');
  });
});

// ---------------------------------------------------------------------------------------

const BAD_HYPER: Array<[key: string, value: unknown, cls: ErrorClass, message: RegExp]> = [
  ['lr', -1e-3, RangeError, /lr must be >= 0/],
  ['lr', NaN, RangeError, /lr must be a finite number, got NaN/],
  ['lr', Infinity, RangeError, /lr must be a finite number, got Infinity/],
  ['betas', [1, 0.999], RangeError, /betas\[0\] must be in \[0, 1\), got 1/],
  ['betas', [0.9, 1], RangeError, /betas\[1\] must be in \[0, 1\)/],
  ['betas', [-0.1, 0.999], RangeError, /betas\[0\].*-0\.1/],
  ['betas', [NaN, 0.999], RangeError, /betas\[0\].*NaN/],
  ['betas', [0.9], TypeError, /betas must be an array of two numbers/],
  ['betas', [0.9, 0.99, 0.999], TypeError, /betas must be an array of two numbers/],
  ['betas', 0.9, TypeError, /betas/],
  ['eps', 0, RangeError, /eps must be > 0/],
  ['eps', -1e-8, RangeError, /eps must be > 0/],
  ['eps', NaN, RangeError, /eps must be a finite number/],
  ['weightDecay', -0.01, RangeError, /weightDecay must be >= 0/],
  ['weightDecay', Infinity, RangeError, /weightDecay must be a finite number/],
  ['amsgrad', 'yes', TypeError, /amsgrad must be a boolean/],
  ['amsgrad', 1, TypeError, /amsgrad must be a boolean/],
  ['maximize', 0, TypeError, /maximize must be a boolean/],
];

describe('bad hyperparameters', () => {
  for (const [key, value, cls, message] of BAD_HYPER) {
    const label = `${key} = ${Array.isArray(value) ? `[${value.join(', ')}]` : String(value)}`;
    describe(label, () => {
      rejects('in the constructor options', {
        bad: (f) => new AdamW([f.w, f.h], { [key]: value }),
        error: cls,
        message: [/AdamW options/, message],
      });
      rejects('in a param group', {
        bad: (f) => new AdamW([{ params: [f.w] }, { params: [f.h], [key]: value }]),
        error: cls,
        message: [/param group 1/, message],
      });
      rejects('in addParamGroup (the group is not added)', {
        bad: (f) => f.opt.addParamGroup({ params: [newParam('extra')], [key]: value }),
        error: cls,
        message: [/param group 2/, message],
        extra: (f) => expect(f.opt.paramGroups.length).toBe(2),
      });
      let saved: unknown;
      rejects('set on opt.paramGroups[1] before step()', {
        prepare: (f) => {
          saved = (f.opt.paramGroups[1] as Record<string, unknown>)[key];
          (f.opt.paramGroups[1] as Record<string, unknown>)[key] = value;
        },
        bad: (f) => f.opt.step(),
        error: cls,
        message: [/paramGroups\[1\]/, message],
        repair: (f) => ((f.opt.paramGroups[1] as Record<string, unknown>)[key] = saved),
      });
      rejects('set on opt.paramGroups[0] before stepAsync()', {
        prepare: (f) => {
          saved = (f.opt.paramGroups[0] as Record<string, unknown>)[key];
          (f.opt.paramGroups[0] as Record<string, unknown>)[key] = value;
        },
        bad: (f) => f.opt.stepAsync(),
        async: true,
        error: cls,
        message: [/paramGroups\[0\]/, message],
        repair: (f) => ((f.opt.paramGroups[0] as Record<string, unknown>)[key] = saved),
      });
    });
  }
});

// ---------------------------------------------------------------------------------------

describe('bad param lists', () => {
  rejects('a param in two groups', {
    bad: (f) => new AdamW([{ params: [f.w] }, { params: [f.h, f.w] }]),
    error: Error,
    message: [/param group 1/, /param 'w'/, /more than one param group/],
  });
  rejects('the same param twice in one list', {
    bad: (f) => new AdamW([f.w, f.h, f.w]),
    error: Error,
    message: [/param 'w'/, /more than one param group|twice/],
  });
  rejects('the same param twice in one group', {
    bad: (f) => new AdamW([{ params: [f.b, f.b] }]),
    error: Error,
    message: [/param 'b'/, /twice/],
  });
  rejects('an empty param list', {
    bad: () => new AdamW([]),
    error: RangeError,
    message: [/empty parameter list/],
  });
  rejects('an empty group', {
    bad: (f) => new AdamW([{ params: [f.w] }, { params: [] }]),
    error: RangeError,
    message: [/param group 1/, /params is empty/],
  });
  rejects('a group without params', {
    bad: (f) => new AdamW([{ params: [f.w] }, { lr: 1 } as unknown as { params: Parameter[] }]),
    error: TypeError,
    message: [/param group 1/, /params/],
  });
  rejects('a non-Parameter in a group', {
    bad: (f) => new AdamW([{ params: [f.w, { name: 'fake' } as unknown as Parameter] }]),
    error: TypeError,
    message: [/param group 0/, /params\[1\] must be a Parameter/],
  });
  rejects('a Tensor where a Parameter belongs (in a group)', {
    bad: (f) => new AdamW([{ params: [f.w.data as unknown as Parameter] }]),
    error: TypeError,
    message: [/params\[0\] must be a Parameter/],
  });
  rejects('a non-Parameter in a flat list', {
    bad: (f) => new AdamW([f.w, 42 as unknown as Parameter]),
    error: TypeError,
    message: [/Parameter/],
  });
  rejects('Tensors instead of Parameters', {
    bad: (f) => new AdamW([f.w.data, f.h.data] as unknown as Parameter[]),
    error: TypeError,
    message: [/param group 0/],
  });
  rejects('params that are not iterable', {
    bad: (f) => new AdamW(f.w as unknown as Parameter[]),
    error: TypeError,
    message: [/params must be an array/],
  });
  rejects('params mixing Parameters and groups', {
    bad: (f) => new AdamW([f.w, { params: [f.h] }] as unknown as Parameter[]),
    error: TypeError,
    message: [/cannot mix Parameters and groups/],
  });
  rejects('params mixing groups and Parameters', {
    bad: (f) => new AdamW([{ params: [f.h] }, f.w] as unknown as Parameter[]),
    error: TypeError,
    message: [/param group 1/, /cannot mix Parameters and groups/],
  });
  rejects('two Parameters wrapping the same data tensor', {
    bad: (f) => new AdamW([f.h, new Parameter(f.h.data, { name: 'alias' })]),
    error: Error,
    message: [/'alias'/, /twice|more than one|same/],
  });
  it.skipIf(!native().nativeInfo().cudaUsable)('params on different devices (needs a GPU)', () => {
    const onCpu = new Parameter(Tensor.zeros([3], { device: 'cpu' }), { name: 'c' });
    const onGpu = new Parameter(Tensor.zeros([3], { device: 'cuda' }), { name: 'g' });
    expect(() => new AdamW([onCpu, onGpu])).toThrow(/param 'g' is on cuda but the optimizer's params are on cpu/);
  });
});

describe('addParamGroup: rejected groups leave the optimizer as it was', () => {
  rejects('a param already in the optimizer', {
    bad: (f) => f.opt.addParamGroup({ params: [f.w] }),
    error: Error,
    message: [/param group 2/, /param 'w'/, /more than one param group/],
    extra: (f) => expect(f.opt.paramGroups.length).toBe(2),
  });
  rejects('a new param together with one already present (neither is added)', {
    bad: (f) => f.opt.addParamGroup({ params: [newParam('fresh'), f.b], lr: 0.5 }),
    error: Error,
    message: [/param 'b'/, /more than one param group/],
    extra: (f) => expect(f.opt.paramGroups.length).toBe(2),
  });
  rejects('a new Parameter wrapping the data tensor of a param already present', {
    bad: (f) => f.opt.addParamGroup({ params: [new Parameter(f.w.data, { name: 'alias' })] }),
    error: Error,
    message: [/'alias'/],
    extra: (f) => {
      expect(f.opt.paramGroups.length).toBe(2);
      expect(() => f.opt.stateDict()).not.toThrow();
    },
  });
  rejects('an empty group', {
    bad: (f) => f.opt.addParamGroup({ params: [] }),
    error: RangeError,
    message: [/param group 2/, /params is empty/],
  });
  rejects('not an object', {
    bad: (f) => f.opt.addParamGroup(null as unknown as { params: Parameter[] }),
    error: TypeError,
    message: [/addParamGroup/],
  });

  it('a param whose group was rejected is not updated by later steps', () => {
    const f = fixture();
    const p = newParam('fresh');
    expect(() => f.opt.addParamGroup({ params: [p, f.b] })).toThrow(/more than one/);
    const before = tensorBits(p.data);
    p.grad = Tensor.from(new Float32Array(6).fill(1), { device: 'cpu' });
    f.setGrads();
    f.opt.step();
    expect(tensorBits(p.data)).toEqual(before);
    expect(Object.keys(f.opt.stateDict().state)).toEqual(['0', '1', '2']);
  });
});

// ---------------------------------------------------------------------------------------

describe('loadStateDict: a dict that does not fit changes nothing', () => {
  /** A valid dict for the fixture's optimizer, with different values everywhere. */
  function donorDict(): AdamWStateDict {
    const donor = fixture(7, 3);
    donor.opt.paramGroups[0].lr = 0.05;
    donor.opt.paramGroups[1].betas = [0.5, 0.6];
    return donor.opt.stateDict();
  }
  const cases: Array<[string, (sd: AdamWStateDict) => unknown, ErrorClass, RegExp[]]> = [
    [
      'too few groups',
      (sd) => ({ ...sd, param_groups: sd.param_groups.slice(0, 1) }),
      RangeError,
      [/1 param groups/, /has 2/],
    ],
    [
      'too many groups',
      (sd) => ({ ...sd, param_groups: [...sd.param_groups, { ...sd.param_groups[1], params: [3] }] }),
      RangeError,
      [/3 param groups/, /has 2/],
    ],
    [
      'a group of the wrong size',
      (sd) => ((sd.param_groups[1].params = [2, 3]), sd),
      RangeError,
      [/param_groups\[1\]/, /2 params/, /has 1/],
    ],
    [
      'exp_avg of the wrong length',
      (sd) => ((sd.state[2].exp_avg = new Float32Array(14)), sd),
      RangeError,
      [/state 2/, /param 'b'/, /exp_avg has 14 elements/, /15/],
    ],
    [
      'exp_avg_sq of the wrong length',
      (sd) => ((sd.state[0].exp_avg_sq = new Float32Array(33)), sd),
      RangeError,
      [/param 'w'/, /exp_avg_sq has 33/],
    ],
    [
      'master of the wrong length',
      (sd) => ((sd.state[1].master = new Float32Array(15)), sd),
      RangeError,
      [/param 'h'/, /master has 15/],
    ],
    // (number[] and other numeric typed arrays are converted to fp32: see test/state_dict.test.ts)
    [
      'exp_avg that is not numeric',
      (sd) => ((sd.state[2].exp_avg = Array.from(sd.state[2].exp_avg, String) as unknown as Float32Array), sd),
      TypeError,
      [/param 'b'/, /exp_avg must be a Float32Array/],
    ],
    [
      'master weights for a float32 param',
      (sd) => ((sd.state[0].master = new Float32Array(32)), sd),
      TypeError,
      [/param 'w'/, /master/],
    ],
    [
      'a fractional step',
      (sd) => ((sd.state[2].step = 1.5), sd),
      RangeError,
      [/state 2/, /step must be an integer, got 1.5/],
    ],
    ['a negative step', (sd) => ((sd.state[1].step = -1), sd), RangeError, [/step must be >= 0, got -1/]],
    ['a NaN step', (sd) => ((sd.state[1].step = NaN), sd), RangeError, [/step must be an integer, got NaN/]],
    [
      'a string step',
      (sd) => ((sd.state[1].step = '3' as unknown as number), sd),
      TypeError, // the wrong type, shown quoted
      [/step must be an integer, got "3"/],
    ],
    ['state for an index no group has', (sd) => ((sd.state[7] = sd.state[0]), sd), RangeError, [/state 7/]],
    ['a negative lr', (sd) => ((sd.param_groups[1].lr = -1), sd), RangeError, [/param_groups\[1\]/, /lr/]],
    [
      'betas of 1',
      (sd) => ((sd.param_groups[0].betas = [1, 0.999]), sd),
      RangeError,
      [/param_groups\[0\]/, /betas\[0\]/],
    ],
    ['eps of 0', (sd) => ((sd.param_groups[0].eps = 0), sd), RangeError, [/param_groups\[0\]/, /eps/]],
    ['not a state dict', () => ({ state: {} }), TypeError, [/param_groups/]],
    ['null', () => null, TypeError, [/loadStateDict/]],
  ];
  for (const [name, corrupt, cls, messages] of cases) {
    rejects(name, {
      bad: (f) => f.opt.loadStateDict(corrupt(donorDict()) as AdamWStateDict),
      error: cls,
      message: [/loadStateDict/, ...messages],
    });
  }

  // The last param (index 2) cannot take its state: the first two must not have taken theirs.
  rejects('a param whose data was disposed (the params before it keep their state and values)', {
    prepare: (f) => f.b.data.dispose(),
    bad: (f) => f.opt.loadStateDict(donorDict()),
    error: Error,
    message: [/param 'b'/, /disposed/],
    twin: false,
  });

  it('the donor dict itself loads (the cases above fail only for what they break)', () => {
    const f = fixture();
    const sd = donorDict();
    f.opt.loadStateDict(sd);
    expect(f.opt.paramGroups[0].lr).toBe(0.05);
    expect(f.opt.paramGroups[1].betas).toEqual([0.5, 0.6]);
    expect(sdBits(f.opt.stateDict())).toEqual(sdBits(sd));
  });
});

// ---------------------------------------------------------------------------------------

describe('zeroGrad and params without grads', () => {
  it('zeroGrad() sets every grad to null, and a step then changes nothing', () => {
    const f = fixture();
    f.setGrads();
    f.opt.zeroGrad();
    for (const p of f.params) expect(p.grad).toBeNull();
    const before = snapshot(f);
    f.opt.step();
    expectUnchanged(f, before, 'step after zeroGrad()');
  });

  it('zeroGrad({ setToNone: false }) zeroes the same grad tensors in place', () => {
    const f = fixture();
    const twin = fixture();
    f.setGrads();
    const grads = f.params.map((p) => p.grad);
    f.opt.zeroGrad({ setToNone: false });
    f.params.forEach((p, i) => {
      expect(p.grad).toBe(grads[i]);
      expect(Array.from(p.grad!.toFloat32Array())).toEqual(new Array(p.data.numel).fill(0));
    });
    // The next step uses those zero grads: the same as a twin given fresh zero grads.
    twin.setGrads();
    for (const p of twin.params) p.grad = Tensor.zeros(p.data.shape, { dtype: p.data.dtype, device: 'cpu' });
    f.opt.step();
    twin.opt.step();
    expectSameAs(f, twin, 'step on zeroed grads');
  });

  it('a param whose grad is null is skipped entirely while the others step', () => {
    const f = fixture();
    const twin = fixture();
    const before = f.opt.stateDict();
    const hBits = tensorBits(f.h.data);
    f.setGrads();
    twin.setGrads();
    f.h.grad = null;
    f.opt.step();
    twin.opt.step();
    const after = f.opt.stateDict();
    // h: values, moments, master and step count untouched (no weight decay either).
    expect(tensorBits(f.h.data)).toEqual(hBits);
    expect(sdBits({ state: { 1: after.state[1] }, param_groups: [] })).toEqual(
      sdBits({ state: { 1: before.state[1] }, param_groups: [] }),
    );
    expect(after.state[1].step).toBe(2);
    // w and b stepped exactly as they do when h has a grad.
    expect(after.state[0].step).toBe(3);
    expect(after.state[2].step).toBe(3);
    const twinSd = twin.opt.stateDict();
    for (const i of [0, 2]) {
      expect(tensorBits(f.params[i].data)).toEqual(tensorBits(twin.params[i].data));
      expect(sdBits({ state: { [i]: after.state[i] }, param_groups: [] })).toEqual(
        sdBits({ state: { [i]: twinSd.state[i] }, param_groups: [] }),
      );
    }
  });

  it('a param that never had a grad has no state', () => {
    const p = newParam('a');
    const q = newParam('b', 6, 'float32', 5);
    const opt = new AdamW([p, q]);
    q.grad = Tensor.from(new Float32Array(6).fill(0.5), { device: 'cpu' });
    opt.step();
    const sd = opt.stateDict();
    expect(Object.keys(sd.state)).toEqual(['1']);
    expect(sd.param_groups[0].params).toEqual([0, 1]);
  });
});

// ---------------------------------------------------------------------------------------

describe('hyperparameter changes and new groups take effect at the next step', () => {
  function single(lr: number, seed = 3): { p: Parameter; opt: AdamW; grad: Float32Array } {
    const p = newParam('p', 64, 'float32', seed);
    const opt = new AdamW([p], { lr, weightDecay: 0 });
    return { p, opt, grad: randn(64, rng(seed + 1)) };
  }

  it('step 1: setting paramGroups[0].lr equals constructing with that lr, and the update scales with lr', () => {
    const a = single(1e-3);
    const b = single(1e-3);
    const c = single(4e-3);
    b.opt.paramGroups[0].lr = 4e-3;
    const init = a.p.data.toFloat32Array();
    for (const x of [a, b, c]) {
      x.p.grad = Tensor.from(x.grad, { device: 'cpu' });
      x.opt.step();
    }
    expectSameBits(
      bitsOf(b.p.data.toFloat32Array()),
      bitsOf(c.p.data.toFloat32Array()),
      'lr set before step 1 vs constructor lr',
    );
    const da = a.p.data.toFloat32Array().map((v, i) => v - init[i]);
    const db = b.p.data.toFloat32Array().map((v, i) => v - init[i]);
    for (let i = 0; i < da.length; i++) {
      expect(Math.abs(da[i])).toBeGreaterThan(0);
      expect(db[i] / da[i]).toBeCloseTo(4, 2);
    }
  });

  it('mid-run: lr set on paramGroups matches an optimizer restored with that lr', () => {
    const a = fixture();
    const b = fixture();
    const unchanged = fixture();
    const sd = b.opt.stateDict();
    sd.param_groups[0].lr = 5e-3;
    sd.param_groups[1].lr = 1e-4;
    // b2: a fresh optimizer over b's params with other hyperparameters, restored from the dict.
    const b2 = new AdamW([{ params: [b.w, b.h] }, { params: [b.b] }], { lr: 0.3, weightDecay: 0.5 });
    b2.loadStateDict(sd);
    a.opt.paramGroups[0].lr = 5e-3;
    a.opt.paramGroups[1].lr = 1e-4;
    for (const f of [a, b, unchanged]) f.setGrads();
    a.opt.step();
    b2.step();
    unchanged.opt.step();
    a.params.forEach((p, i) => {
      expect(tensorBits(p.data), p.name).toEqual(tensorBits(b.params[i].data));
      expect(tensorBits(p.data), `${p.name} moved differently with the new lr`).not.toEqual(
        tensorBits(unchanged.params[i].data),
      );
    });
    expect(sdBits(a.opt.stateDict())).toEqual(sdBits(b2.stateDict()));
  });

  it('addParamGroup: the new group steps with its own hyperparameters, missing ones from the defaults', () => {
    const f = fixture();
    const twin = fixture();
    const p = newParam('late', 20, 'float16', 11);
    const q = newParam('later', 9, 'float32', 12);
    const pRef = newParam('late', 20, 'float16', 11);
    const qRef = newParam('later', 9, 'float32', 12);
    f.opt.addParamGroup({ params: [p], lr: 0.01, betas: [0.8, 0.9], weightDecay: 0.1, amsgrad: true });
    f.opt.addParamGroup({ params: [q] });
    expect(f.opt.paramGroups.length).toBe(4);
    const g3 = f.opt.paramGroups[3];
    expect([g3.lr, g3.betas, g3.eps, g3.weightDecay, g3.amsgrad, g3.maximize]).toEqual([
      1e-3,
      [0.9, 0.999],
      1e-8,
      1e-2,
      false,
      false,
    ]);
    const pOpt = new AdamW([pRef], { lr: 0.01, betas: [0.8, 0.9], weightDecay: 0.1, amsgrad: true });
    const qOpt = new AdamW([qRef], { lr: 1e-3 });
    const gr = rng(21);
    for (let s = 0; s < 3; s++) {
      const gp = randn(20, gr);
      const gq = randn(9, gr);
      p.grad = Tensor.from(gp, { dtype: 'float16', device: 'cpu' });
      pRef.grad = Tensor.from(gp, { dtype: 'float16', device: 'cpu' });
      q.grad = Tensor.from(gq, { device: 'cpu' });
      qRef.grad = Tensor.from(gq, { device: 'cpu' });
      f.setGrads();
      twin.setGrads();
      f.opt.step();
      twin.opt.step();
      pOpt.step();
      qOpt.step();
    }
    expect(tensorBits(p.data)).toEqual(tensorBits(pRef.data));
    expect(tensorBits(q.data)).toEqual(tensorBits(qRef.data));
    f.params.forEach((x, i) => expect(tensorBits(x.data), x.name).toEqual(tensorBits(twin.params[i].data)));
    const sd = f.opt.stateDict();
    expect(sd.param_groups.map((g) => g.params)).toEqual([[0, 1], [2], [3], [4]]);
    expect(sd.state[3].max_exp_avg_sq).toBeInstanceOf(Float32Array);
    expect(sdBits({ state: { 0: sd.state[3] }, param_groups: [] })).toEqual(
      sdBits({ state: pOpt.stateDict().state, param_groups: [] }),
    );
  });
});

// ---------------------------------------------------------------------------------------

describe('stepAsync', () => {
  it('returns a Promise; the event loop runs while a large (8M-element) step is in flight', async () => {
    const N = 8 * 2 ** 20;
    const init = new Float32Array(N);
    const grad = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      init[i] = ((i * 7919) % 2001) / 1000 - 1;
      grad[i] = ((i * 104729) % 1999) / 10000 - 0.1;
    }
    const pa = new Parameter(Tensor.from(init, { device: 'cpu' }), { name: 'big' });
    const pb = new Parameter(Tensor.from(init, { device: 'cpu' }), { name: 'big' });
    pa.grad = Tensor.from(grad, { device: 'cpu' });
    pb.grad = Tensor.from(grad, { device: 'cpu' });
    const a = new AdamW([pa], { lr: 1e-2 });
    const b = new AdamW([pb], { lr: 1e-2 });
    let ticks = 0;
    let resolved = false;
    const tick = () => {
      if (resolved) return;
      ticks++;
      setImmediate(tick);
    };
    const promise = a.stepAsync();
    expect(promise).toBeInstanceOf(Promise);
    setImmediate(tick);
    const result = await promise;
    resolved = true;
    expect(result).toBeUndefined();
    expect(ticks, 'setImmediate callbacks that ran while the step was in flight').toBeGreaterThan(0);
    b.step();
    expectSameBits(bitsOf(pa.data.toFloat32Array()), bitsOf(pb.data.toFloat32Array()), 'async vs sync step');
    expect(a.stateDict().state[0].step).toBe(1);
  });

  it('step() and stepAsync() while a stepAsync is pending are rejected and change nothing', async () => {
    const f = fixture();
    const twin = fixture();
    f.setGrads();
    twin.setGrads();
    const pending = f.opt.stepAsync();
    expectThrows(() => f.opt.step(), Error, [/stepAsync/]);
    await expectRejects(f.opt.stepAsync(), Error, [/stepAsync/]);
    await pending;
    twin.opt.step();
    expectSameAs(f, twin, 'after the rejected steps');
    expect(f.opt.stateDict().state[0].step).toBe(3);
  });

  // While a step is pending, the native side refuses changes. Whatever a call does then, the
  // optimizer must stay consistent: if it throws, nothing changed (p.grad, groups,
  // hyperparameters are as before); if it does not, the change is fully in effect.

  for (const how of ['replaced', 'set to null'] as const) {
    it(`a grad ${how} while stepAsync is pending: p.grad is exactly what the next step uses`, async () => {
      const f = fixture();
      const twin = fixture();
      f.setGrads();
      twin.setGrads();
      const pending = f.opt.stepAsync();
      twin.opt.step();
      const old = f.h.grad;
      const replacement =
        how === 'set to null'
          ? null
          : Tensor.from(new Float32Array(16).fill(0.25), { dtype: 'float16', device: 'cpu' });
      let threw = false;
      try {
        f.h.grad = replacement;
      } catch (e) {
        threw = true;
        expect((e as Error).message).toMatch(/stepAsync/);
      }
      await pending;
      expect(f.h.grad, threw ? 'the setter threw, so p.grad must be unchanged' : 'the setter succeeded').toBe(
        threw ? old : replacement,
      );
      // Step again with the grads the params report; the twin gets copies of them.
      twin.params.forEach((p, i) => (p.grad = f.params[i].grad ? cloneTensor(f.params[i].grad!) : null));
      f.opt.step();
      twin.opt.step();
      expectSameAs(f, twin, 'the step after');
    });
  }

  it('zeroGrad() while stepAsync is pending: the grads reported are the grads used', async () => {
    const f = fixture();
    const twin = fixture();
    f.setGrads();
    twin.setGrads();
    const pending = f.opt.stepAsync();
    twin.opt.step();
    const old = f.params.map((p) => p.grad);
    let threw = false;
    try {
      f.opt.zeroGrad();
    } catch (e) {
      threw = true;
      expect((e as Error).message).toMatch(/stepAsync/);
    }
    await pending;
    f.params.forEach((p, i) => expect(p.grad, p.name).toBe(threw ? old[i] : null));
    twin.params.forEach((p, i) => (p.grad = f.params[i].grad ? cloneTensor(f.params[i].grad!) : null));
    f.opt.step();
    twin.opt.step();
    expectSameAs(f, twin, 'the step after');
  });

  it('addParamGroup while stepAsync is pending: rejected cleanly or fully added', async () => {
    const f = fixture();
    f.setGrads();
    const pending = f.opt.stepAsync();
    const p = newParam('late');
    let threw = false;
    try {
      f.opt.addParamGroup({ params: [p], lr: 0.1 });
    } catch (e) {
      threw = true;
      expect((e as Error).message).toMatch(/stepAsync/);
    }
    await pending;
    expect(f.opt.paramGroups.length).toBe(threw ? 2 : 3);
    expect(() => f.opt.stateDict()).not.toThrow();
    const before = tensorBits(p.data);
    p.grad = Tensor.from(new Float32Array(6).fill(1), { device: 'cpu' });
    f.setGrads();
    f.opt.step();
    expect(() => f.opt.stateDict()).not.toThrow();
    if (threw) expect(tensorBits(p.data)).toEqual(before);
    else expect(tensorBits(p.data)).not.toEqual(before);
  });

  it('loadStateDict while stepAsync is pending: rejected cleanly or fully loaded', async () => {
    const f = fixture();
    const twin = fixture();
    const donor = fixture(7, 3);
    donor.opt.paramGroups[0].lr = 0.05;
    const sd = donor.opt.stateDict();
    f.setGrads();
    twin.setGrads();
    const pending = f.opt.stepAsync();
    twin.opt.step();
    let threw = false;
    try {
      f.opt.loadStateDict(sd);
    } catch (e) {
      threw = true;
      expect((e as Error).message).toMatch(/stepAsync/);
    }
    await pending;
    if (threw) {
      expectSameAs(f, twin, 'rejected loadStateDict');
    } else {
      expect(groupsOf(f.opt)).toEqual(groupsOf(donor.opt));
      expect(sdBits(f.opt.stateDict())).toEqual(sdBits(sd));
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('stateDict / loadStateDict round trip', () => {
  const variants: Array<[string, DType, boolean]> = [
    ['float32', 'float32', false],
    ['float16', 'float16', false],
    ['bfloat16', 'bfloat16', false],
    ['float32 amsgrad', 'float32', true],
    ['bfloat16 amsgrad', 'bfloat16', true],
  ];
  for (const [name, dtype, amsgrad] of variants) {
    it(`${name}: an optimizer restored from another's dict continues bit for bit`, () => {
      const init = rng(31);
      const shapes = [[3, 7], [50], [2, 2, 2]];
      const inits = shapes.map((s) =>
        randn(
          s.reduce((a, b) => a * b, 1),
          init,
        ),
      );
      const pa = shapes.map(
        (s, i) => new Parameter(Tensor.from(inits[i], { dtype, shape: s, device: 'cpu' }), { name: `p${i}` }),
      );
      const a = new AdamW(
        [
          { params: [pa[0], pa[2]], weightDecay: 0.1 },
          { params: [pa[1]], lr: 3e-3, betas: [0.8, 0.99], eps: 1e-6 },
        ],
        { lr: 1e-2, amsgrad },
      );
      const gradRng = rng(32);
      const grads = () => pa.map((p) => randn(p.data.numel, gradRng, 0.5));
      for (let s = 0; s < 3; s++) {
        grads().forEach((g, i) => (pa[i].grad = Tensor.from(g, { dtype, shape: pa[i].data.shape, device: 'cpu' })));
        a.step();
      }
      const sd = a.stateDict();
      expect(Object.keys(sd.state)).toEqual(['0', '1', '2']);
      expect(sd.param_groups.map((g) => g.params)).toEqual([[0, 1], [2]]);
      expect(sd.param_groups[1]).toMatchObject({
        lr: 3e-3,
        betas: [0.8, 0.99],
        eps: 1e-6,
        weight_decay: 1e-2,
        amsgrad,
      });
      for (const s of Object.values(sd.state)) {
        expect(s.step).toBe(3);
        expect(s.master !== undefined).toBe(dtype !== 'float32');
        expect(s.max_exp_avg_sq !== undefined).toBe(amsgrad);
      }
      // b: same param values (copied first: a later write would re-read the master from them),
      // other hyperparameters, then restored from a's dict.
      const pb = pa.map((p) => new Parameter(cloneTensor(p.data), { name: p.name }));
      const b = new AdamW([{ params: [pb[0], pb[2]] }, { params: [pb[1]] }], {
        lr: 0.5,
        betas: [0.5, 0.5],
        weightDecay: 0,
        amsgrad: !amsgrad,
      });
      b.loadStateDict(sd);
      expect(groupsOf(b)).toEqual(groupsOf(a));
      expect(sdBits(b.stateDict())).toEqual(sdBits(sd));
      // The dict is copied in: changing it afterwards changes nothing.
      sd.state[0].exp_avg.fill(123);
      sd.param_groups[0].lr = 99;
      for (let s = 0; s < 3; s++) {
        grads().forEach((g, i) => {
          pa[i].grad = Tensor.from(g, { dtype, shape: pa[i].data.shape, device: 'cpu' });
          pb[i].grad = Tensor.from(g, { dtype, shape: pb[i].data.shape, device: 'cpu' });
        });
        a.step();
        b.step();
        pa.forEach((p, i) => expect(tensorBits(pb[i].data), `step ${s} ${p.name}`).toEqual(tensorBits(p.data)));
      }
      expect(sdBits(b.stateDict())).toEqual(sdBits(a.stateDict()));
    });
  }
});

// ---------------------------------------------------------------------------------------

describe('the addon re-checks what TypeScript checks (defence in depth, through the raw handles)', () => {
  const hyper = (lr = 1e-3) => Float64Array.from([lr, 0.9, 0.999, 1e-8, 0.01, 0, 0]);

  function engine(): { h: ReturnType<typeof makeHandle>; data: Tensor } {
    const data = Tensor.from(randn(8, rng(4)), { device: 'cpu' });
    const h = makeHandle();
    h.addParams([data.handle], 0, ['raw'], true);
    return { h, data };
  }
  function makeHandle() {
    return new (native().AdamWHandle)(0);
  }

  it('a grad of the wrong element count bound natively: RangeError at step, nothing written', () => {
    const { h, data } = engine();
    const before = tensorBits(data);
    h.setGrad(0, Tensor.zeros([9], { device: 'cpu' }).handle);
    expectThrows(() => h.step(hyper()), RangeError, [/param 'raw'/, /9 elements/, /8/]);
    expect(tensorBits(data)).toEqual(before);
    expect(h.getState(0)).toBeNull();
  });

  it('a grad of the wrong dtype bound natively: TypeError at step', () => {
    const half = Tensor.from(randn(8, rng(5)), { dtype: 'bfloat16', device: 'cpu' });
    const h = makeHandle();
    h.addParams([half.handle], 0, ['rawb'], true);
    h.setGrad(0, Tensor.zeros([8], { dtype: 'float16', device: 'cpu' }).handle);
    const before = tensorBits(half);
    expectThrows(() => h.step(hyper()), TypeError, [/param 'rawb'/, /float16/, /bfloat16/]);
    expect(tensorBits(half)).toEqual(before);
  });

  it('bad hyperparameter tables: RangeError/TypeError, nothing written', () => {
    const { h, data } = engine();
    h.setGrad(0, Tensor.from(new Float32Array(8).fill(1), { device: 'cpu' }).handle);
    const before = tensorBits(data);
    expectThrows(() => h.step(hyper(NaN)), RangeError, [/param group 0/, /lr/]);
    expectThrows(() => h.step(hyper(-1)), RangeError, [/lr/]);
    expectThrows(() => h.step(Float64Array.from([1e-3, 1, 0.999, 1e-8, 0, 0, 0])), RangeError, [/betas\[0\]/]);
    expectThrows(() => h.step(Float64Array.from([1e-3, 0.9, 0.999, 0, 0, 0, 0])), RangeError, [/eps/]);
    expectThrows(() => h.step(Float64Array.from([1e-3, 0.9, 0.999, 1e-8, -1, 0, 0])), RangeError, [/weight_decay/]);
    expectThrows(() => h.step(new Float64Array(0)), RangeError, [/param 'raw'/, /group/]);
    expectThrows(() => h.step(new Float64Array(5)), RangeError, [/partial group/]);
    expectThrows(() => h.step([1e-3, 0.9, 0.999, 1e-8, 0, 0, 0] as unknown as Float64Array), TypeError, [
      /Float64Array/,
    ]);
    expect(tensorBits(data)).toEqual(before);
    expect(h.getState(0)).toBeNull();
  });

  it('setState with vectors of the wrong length or a bad step: rejected, state unchanged', () => {
    const { h } = engine();
    h.setGrad(0, Tensor.from(new Float32Array(8).fill(1), { device: 'cpu' }).handle);
    h.step(hyper());
    const before = h.getState(0)!;
    const good = { step: 4, exp_avg: new Float32Array(8), exp_avg_sq: new Float32Array(8) };
    expectThrows(() => h.setState(0, { ...good, exp_avg: new Float32Array(7) }), RangeError, [
      /param 'raw'/,
      /8 elements/,
    ]);
    expectThrows(() => h.setState(0, { ...good, step: 1.5 }), RangeError, [/step/]);
    expectThrows(() => h.setState(0, { ...good, step: -2 }), RangeError, [/step/]);
    expectThrows(() => h.setState(0, { ...good, master: new Float32Array(8) }), RangeError, [/master/]);
    expectThrows(() => h.setState(5, good), RangeError, [/index 5/]);
    const after = h.getState(0)!;
    expect(after.step).toBe(before.step);
    expect(Array.from(bitsOf(after.exp_avg as Float32Array))).toEqual(
      Array.from(bitsOf(before.exp_avg as Float32Array)),
    );
  });

  it('tensor handles re-check lengths and types', () => {
    const t = Tensor.from([1, 2, 3, 4], { dtype: 'float16', device: 'cpu' });
    expectThrows(() => t.handle.copyFromFloat32(new Float32Array(5)), RangeError, [/5 values/]);
    expectThrows(() => t.handle.copyFromBits16(new Uint16Array(3)), RangeError, [/3 values/]);
    expectThrows(() => t.handle.copyFromFloat32(new Float64Array(4) as unknown as Float32Array), TypeError, [
      /Float32Array/,
    ]);
    expectThrows(() => t.handle.copyFromBits16(new Int16Array(4) as unknown as Uint16Array), TypeError, [
      /Uint16Array/,
    ]);
    const f = Tensor.zeros([4], { device: 'cpu' });
    expectThrows(() => f.handle.copyFromBits16(new Uint16Array(4)), TypeError, [/float32/]);
    expectThrows(() => native().TensorHandle.create(7, 0, 4), TypeError, [/dtype/]);
    expectThrows(() => native().TensorHandle.create(0, 3, 4), TypeError, [/device/]);
    expectThrows(() => native().TensorHandle.create(0, 0, -1), RangeError, [/numel/]);
    expectThrows(() => native().TensorHandle.create(0, 0, 2.5), RangeError, [/numel/]);
    expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3, 4]);
  });
});
