// Lion and AdamWDL: bad input is rejected with a clear error naming the param and changes
// nothing (docs/design.md section 11), and the behaviours the issue pins down: Lion's initial_lr,
// its large-decay warning, its state dict, sign(0) = 0; AdamWDL's ratios, nameDict,
// applyDecayParamFun, setParamLrFun, and its decay with the BASE lr.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AdamWDL, type AdamWDLOptions, type DType, Lion, type LionStateDict, Parameter, Tensor } from '../src/index';
import { bitsOf, expectSameBits } from './support/compare';
import { type ErrorClass, expectThrows } from './support/expect_throws';
import { type AnyOptimizer, stateBits, tensorBits } from './support/optimizer_setups';
import { randn, rng } from './support/random';

// What every state dict's param groups record of the (default) state dtype.
const FP32_STATE = { state_dtype: 'float32', state_block_size: 256 };

function param(name: string, n = 6, dtype: DType = 'float32', seed = 1, scale = 0.5): Parameter {
  return new Parameter(Tensor.from(randn(n, rng(seed), scale), { dtype, device: 'cpu' }), { name });
}

function gradFor(p: Parameter, seed: number, dtype: DType = 'float32'): Tensor {
  return Tensor.from(randn(p.data.numel, rng(seed), 0.1), { dtype, shape: p.data.shape, device: 'cpu' });
}

function groupsOf(opt: AnyOptimizer): unknown[] {
  return opt.paramGroups.map(({ params, ...rest }) => ({
    ...rest,
    betas: Array.isArray(rest.betas) ? [...rest.betas] : rest.betas,
    params: params.map((p) => p.name),
  }));
}

// Silence and record process warnings (Lion's large-decay warning).
let warnSpy: ReturnType<typeof vi.spyOn>;
beforeEach(() => {
  warnSpy = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
});
afterEach(() => {
  warnSpy.mockRestore();
});
const warnings = () => warnSpy.mock.calls.map((c: unknown[]) => String(c[0]));

// =======================================================================================
// Lion

describe('Lion: bad hyperparameters', () => {
  const BAD: Array<[string, unknown, ErrorClass, RegExp]> = [
    ['lr', 0, RangeError, /lr must be > 0, got 0/],
    ['lr', -1e-4, RangeError, /lr must be > 0/],
    ['lr', NaN, RangeError, /lr must be a finite number, got NaN/],
    ['lr', Infinity, RangeError, /lr must be a finite number/],
    ['betas', [1.01, 0.99], RangeError, /betas\[0\] must be in \[0, 1\], got 1\.01/],
    ['betas', [0.9, 1.01], RangeError, /betas\[1\] must be in \[0, 1\]/],
    ['betas', [-0.1, 0.99], RangeError, /betas\[0\].*-0\.1/],
    ['betas', [0.9, NaN], RangeError, /betas\[1\].*NaN/],
    ['betas', [0.9], TypeError, /betas must be an array of two numbers/],
    ['weightDecay', -1e-4, RangeError, /weightDecay must be >= 0/],
    ['weightDecay', NaN, RangeError, /weightDecay must be a finite number/],
  ];
  for (const [key, value, cls, message] of BAD) {
    const label = `${key} = ${Array.isArray(value) ? `[${value.join(', ')}]` : String(value)}`;
    it(`${label}: rejected in the options, in a group, in addParamGroup and on paramGroups before step()`, () => {
      expectThrows(() => new Lion([param('w')], { [key]: value }), cls, [/Lion options/, message], 'options');
      expectThrows(
        () => new Lion([{ params: [param('a')] }, { params: [param('b'), param('c')], [key]: value }]),
        cls,
        [/param group 1/, message],
        'group',
      );
      const w = param('w');
      const opt = new Lion([w], { lr: 1e-3 });
      w.grad = gradFor(w, 2);
      opt.step();
      const before = {
        groups: groupsOf(opt as unknown as AnyOptimizer),
        state: stateBits(opt as unknown as AnyOptimizer),
        w: tensorBits(w.data),
      };
      expectThrows(
        () => opt.addParamGroup({ params: [param('extra')], [key]: value }),
        cls,
        [/param group 1/, message],
        'addParamGroup',
      );
      const saved = (opt.paramGroups[0] as Record<string, unknown>)[key];
      (opt.paramGroups[0] as Record<string, unknown>)[key] = value;
      expectThrows(() => opt.step(), cls, [/paramGroups\[0\]/, message], 'step');
      (opt.paramGroups[0] as Record<string, unknown>)[key] = saved;
      expect({
        groups: groupsOf(opt as unknown as AnyOptimizer),
        state: stateBits(opt as unknown as AnyOptimizer),
        w: tensorBits(w.data),
      }).toEqual(before);
      expect(warnings()).toEqual([]); // nothing here is a large decay
    });
  }

  it('betas of exactly 0 and 1 are allowed (DecoupledLionW checks 0 <= beta <= 1), and step', () => {
    for (const betas of [
      [1, 1],
      [0, 0],
      [1, 0],
    ] as Array<[number, number]>) {
      const w = param('w');
      const opt = new Lion([w], { lr: 0.01, betas });
      w.grad = gradFor(w, 3);
      const before = w.data.toFloat32Array();
      opt.step();
      const after = w.data.toFloat32Array();
      if (betas[0] === 1)
        expect(Array.from(after), `betas ${betas}: a zero moment gives sign 0`).toEqual(Array.from(before));
      else
        expect(
          after.some((x, i) => x !== before[i]),
          `betas ${betas}`,
        ).toBe(true);
    }
  });

  it('the native side re-checks lr > 0 (defence in depth)', () => {
    const w = param('w');
    const opt = new Lion([w], { lr: 0.01 });
    w.grad = gradFor(w, 4);
    const handle = (opt as unknown as { handle(): { step(h: Float64Array): void } }).handle();
    const before = tensorBits(w.data);
    expectThrows(() => handle.step(new Float64Array([0, 0.9, 0.99, 0, 0.01])), RangeError, [
      /lr must be a finite number > 0/,
    ]);
    expectThrows(() => handle.step(new Float64Array([0.01, 1.5, 0.99, 0, 0.01])), RangeError, [/betas\[0\]/]);
    expect(tensorBits(w.data)).toEqual(before);
  });
});

describe('Lion: the large-weightDecay warning', () => {
  it('weightDecay >= 1e-3 emits one process warning saying the weights are multiplied by 1 - weightDecay each step', () => {
    new Lion([param('w')], { lr: 1e-4, weightDecay: 0.01 });
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/Lion/);
    expect(warnings()[0]).toMatch(/multiplied by 0\.99\b/);
    expect(warnings()[0]).toMatch(/(every|each) step/);
    expect(warnSpy.mock.calls[0][1]).toMatchObject({ code: 'FUSED_OPTIM_LION_WEIGHT_DECAY' });
  });

  it('the threshold: 1e-3 warns, just below does not', () => {
    new Lion([param('w')], { weightDecay: 9.99e-4 });
    expect(warnings()).toEqual([]);
    new Lion([param('w')], { weightDecay: 1e-3 });
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/multiplied by 0\.999\b/);
  });

  it('once per optimizer: several large groups and later large groups add no warning; a second optimizer warns again', () => {
    const opt = new Lion([
      { params: [param('a')], weightDecay: 0.1 },
      { params: [param('b')], weightDecay: 0.2 },
    ]);
    expect(warnings()).toHaveLength(1);
    opt.addParamGroup({ params: [param('c')], weightDecay: 0.5 });
    expect(warnings()).toHaveLength(1);
    new Lion([param('d')], { weightDecay: 0.05 });
    expect(warnings()).toHaveLength(2);
  });

  it('a large decay first seen in addParamGroup warns then, once', () => {
    const opt = new Lion([param('a')], { weightDecay: 0 });
    expect(warnings()).toEqual([]);
    opt.addParamGroup({ params: [param('b')], weightDecay: 0.02 });
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatch(/multiplied by 0\.98\b/);
    opt.addParamGroup({ params: [param('c')], weightDecay: 0.02 });
    expect(warnings()).toHaveLength(1);
  });

  it('a rejected constructor or group does not warn', () => {
    expectThrows(() => new Lion([param('w')], { weightDecay: 0.1, lr: 0 }), RangeError, [/lr/]);
    const opt = new Lion([param('a')]);
    expectThrows(() => opt.addParamGroup({ params: [param('b')], weightDecay: 0.1, lr: -1 }), RangeError, [/lr/]);
    expect(warnings()).toEqual([]);
  });
});

describe('Lion: initial_lr', () => {
  it('is recorded per group at construction, and in addParamGroup, and is in the state dict', () => {
    const opt = new Lion([{ params: [param('a')], lr: 0.01 }, { params: [param('b')] }], { lr: 3e-4 });
    expect(opt.paramGroups.map((g) => g.initialLr)).toEqual([0.01, 3e-4]);
    opt.addParamGroup({ params: [param('c')], lr: 0.5 });
    opt.addParamGroup({ params: [param('d')] });
    expect(opt.paramGroups.map((g) => g.initialLr)).toEqual([0.01, 3e-4, 0.5, 3e-4]);
    // Changing lr later leaves initial_lr alone.
    opt.paramGroups[0].lr = 0.002;
    const sd = opt.stateDict();
    expect(sd.param_groups.map((g) => g.initial_lr)).toEqual([0.01, 3e-4, 0.5, 3e-4]);
    expect(sd.param_groups[0].lr).toBe(0.002);
    expect(sd.param_groups.map((g) => g.params)).toEqual([[0], [1], [2], [3]]);
  });

  it('scales the decay: with a zero grad and zero moment one step is exactly p * float32(1 - (lr / initial_lr) * wd)', () => {
    const w = param('w', 257, 'float32', 5);
    const opt = new Lion([w], { lr: 0.01, weightDecay: 4e-4 });
    opt.paramGroups[0].lr = 0.0025; // lr / initial_lr = 0.25
    const before = w.data.toFloat32Array();
    w.grad = Tensor.zeros([257], { device: 'cpu' });
    opt.step();
    const factor = Math.fround(1 - 0.25 * 4e-4);
    const expected = Float32Array.from(before, (x) => Math.fround(x * factor));
    expectSameBits(bitsOf(w.data.toFloat32Array()), bitsOf(expected), 'decayed param');
  });
});

describe('Lion: sign(0) = 0', () => {
  for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[]) {
    it(`${dtype}: an all-zero grad on a zero-initialized moment leaves the param unchanged (weightDecay 0) and the moment zero`, () => {
      const w = param('w', 65537 + 8, dtype, 6);
      const opt = new Lion([w], { lr: 0.1 });
      const before = tensorBits(w.data);
      w.grad = Tensor.zeros(w.data.shape, { dtype, device: 'cpu' });
      opt.step();
      expect(tensorBits(w.data)).toEqual(before);
      const s = opt.stateDict().state[0];
      expect(s.exp_avg.every((x) => x === 0)).toBe(true);
      if (dtype !== 'float32')
        expectSameBits(
          bitsOf(s.master!),
          bitsOf(Tensor.from(w.data.toBits(), { dtype, device: 'cpu' }).toFloat32Array()),
          'master',
        );
    });
  }

  it('with weight decay, only the decay moves the param (float16 param, fp32 master)', () => {
    const w = param('w', 33, 'float16', 7);
    const opt = new Lion([w], { lr: 0.1, weightDecay: 5e-4 });
    const master0 = w.data.toFloat32Array();
    w.grad = Tensor.zeros([33], { dtype: 'float16', device: 'cpu' });
    opt.step();
    const factor = Math.fround(1 - 5e-4);
    expectSameBits(
      bitsOf(opt.stateDict().state[0].master!),
      bitsOf(Float32Array.from(master0, (x) => Math.fround(x * factor))),
      'master',
    );
  });

  it('an interpolation that is exactly zero (m = -g, beta1 = 0.5) gives no update', () => {
    const w = param('w', 8, 'float32', 8);
    const opt = new Lion([w], { lr: 0.1, betas: [0.5, 0.9] });
    opt.loadStateDict({
      state: { 0: { exp_avg: new Float32Array(8).fill(0.25) } },
      param_groups: opt.stateDict().param_groups,
    });
    const before = tensorBits(w.data);
    w.grad = Tensor.from(new Float32Array(8).fill(-0.25), { device: 'cpu' });
    opt.step();
    expect(tensorBits(w.data)).toEqual(before);
    // m = lerp(0.25, -0.25, 0.1) = 0.2
    expect(Array.from(opt.stateDict().state[0].exp_avg)).toEqual(
      new Array(8).fill(Math.fround(0.25 + Math.fround(0.1 * -0.5))),
    );
  });
});

describe('Lion: state dict', () => {
  function lionFixture(seed: number) {
    const params = [
      param('w', 1001, 'float32', seed),
      param('h', 17, 'float16', seed + 1),
      param('b', 70001, 'bfloat16', seed + 2),
    ];
    const opt = new Lion([
      { params: params.slice(0, 2), lr: 0.01, weightDecay: 5e-4 },
      { params: params.slice(2), lr: 0.003, betas: [0.95, 0.98] },
    ]);
    return { params, opt };
  }
  const dtypeOfGrad = (p: Parameter): DType => (p.name === 'b' ? 'float32' : p.data.dtype);

  it('holds exp_avg (and master for half params) but no step', () => {
    const { params, opt } = lionFixture(10);
    params.forEach((p, i) => (p.grad = gradFor(p, 20 + i, dtypeOfGrad(p))));
    opt.step();
    const sd = opt.stateDict();
    expect(Object.keys(sd.state[0]).sort()).toEqual(['exp_avg']);
    expect(Object.keys(sd.state[1]).sort()).toEqual(['exp_avg', 'master']);
    expect(Object.keys(sd.state[2]).sort()).toEqual(['exp_avg', 'master']);
    expect(sd.state[2].exp_avg).toBeInstanceOf(Float32Array);
    expect(sd.state[2].exp_avg.length).toBe(70001);
    expect(sd.param_groups).toEqual([
      { lr: 0.01, betas: [0.9, 0.99], weight_decay: 5e-4, initial_lr: 0.01, ...FP32_STATE, params: [0, 1] },
      { lr: 0.003, betas: [0.95, 0.98], weight_decay: 0, initial_lr: 0.003, ...FP32_STATE, params: [2] },
    ]);
  });

  /** Optimizer a after 3 steps (lr changed before the third), and b restored from a's dict. */
  function restored() {
    const a = lionFixture(10);
    for (let s = 0; s < 3; s++) {
      if (s === 2) a.opt.paramGroups[0].lr = 0.005;
      a.params.forEach((p, i) => (p.grad = gradFor(p, 100 * s + i, dtypeOfGrad(p))));
      a.opt.step();
    }
    const sd: LionStateDict = a.opt.stateDict();
    // A second optimizer with other values, other hyperparameters, restored from the dict.
    const b = lionFixture(50);
    b.opt.paramGroups[0].lr = 0.7;
    b.params.forEach((p, i) =>
      p.data.dtype === 'float32'
        ? p.data.copyFrom(a.params[i].data.toFloat32Array())
        : p.data.copyFrom(a.params[i].data.toBits()),
    );
    b.opt.loadStateDict(sd);
    return { a, b };
  }

  it('loadStateDict: the restored optimizer reports the loaded groups and state (exp_avg, master) right away', () => {
    const { a, b } = restored();
    expect(groupsOf(b.opt as unknown as AnyOptimizer)).toEqual(groupsOf(a.opt as unknown as AnyOptimizer));
    const sa = a.opt.stateDict();
    const sb = b.opt.stateDict();
    expect(Object.keys(sb.state), 'params with state after loadStateDict').toEqual(Object.keys(sa.state));
    expect(stateBits(b.opt as unknown as AnyOptimizer)).toEqual(stateBits(a.opt as unknown as AnyOptimizer));
  });

  it('loadStateDict round trip: an optimizer restored from the dict continues bit for bit (fp32 params and fp32 masters of half params)', () => {
    const { a, b } = restored();
    for (let s = 3; s < 6; s++) {
      for (const f of [a, b]) {
        f.params.forEach((p, i) => (p.grad = gradFor(p, 100 * s + i, dtypeOfGrad(p))));
        f.opt.step();
      }
    }
    const sa = a.opt.stateDict();
    const sb = b.opt.stateDict();
    a.params.forEach((p, i) => {
      expect(tensorBits(b.params[i].data), `param ${p.name}`).toEqual(tensorBits(p.data));
      expectSameBits(bitsOf(sb.state[i].exp_avg), bitsOf(sa.state[i].exp_avg), `exp_avg of ${p.name}`);
      if (sa.state[i].master)
        expectSameBits(bitsOf(sb.state[i].master!), bitsOf(sa.state[i].master!), `master of ${p.name}`);
    });
  });

  it('a dict without initial_lr loads: the group lr becomes its initial_lr', () => {
    const w = param('w');
    const opt = new Lion([w], { lr: 0.01 });
    opt.loadStateDict({ state: {}, param_groups: [{ lr: 0.02, betas: [0.9, 0.99], weight_decay: 0, params: [0] }] });
    expect(opt.paramGroups[0].lr).toBe(0.02);
    expect(opt.stateDict().param_groups[0].initial_lr).toBe(0.02);
  });

  it('a dict with lr 0 or a step-less state of the wrong length is rejected and changes nothing', () => {
    const w = param('w', 6);
    const opt = new Lion([w], { lr: 0.01 });
    w.grad = gradFor(w, 1);
    opt.step();
    const before = stateBits(opt as unknown as AnyOptimizer);
    const sd = opt.stateDict();
    expectThrows(() => opt.loadStateDict({ ...sd, param_groups: [{ ...sd.param_groups[0], lr: 0 }] }), RangeError, [
      /lr must be > 0/,
    ]);
    expectThrows(() => opt.loadStateDict({ ...sd, state: { 0: { exp_avg: new Float32Array(5) } } }), RangeError, [
      /exp_avg has 5 elements/,
      /'w'/,
    ]);
    expect(stateBits(opt as unknown as AnyOptimizer)).toEqual(before);
  });
});

// =======================================================================================
// AdamWDL

const NAMES = [
  'embeddings.word_embeddings.weight',
  'encoder.layers.0.attention.q.weight',
  'encoder.layers.11.output.dense.bias',
  'encoder.layers.12.x',
  'pooler.dense.weight',
];

describe('AdamWDL: the ratio of each param', () => {
  it('default rule, layerwiseDecay 0.65, nLayers 12: decay^(nLayers - N) in layer N, decay^(nLayers + 1) for embeddings, else 1', () => {
    const params = NAMES.map((n, i) => param(n, 3, 'float32', i));
    const opt = new AdamWDL(params, { layerwiseDecay: 0.65, nLayers: 12 });
    expect(opt.layerwiseDecay).toBe(0.65);
    expect(opt.nLayers).toBe(12);
    expect(Object.fromEntries(opt.ratios)).toEqual({
      'embeddings.word_embeddings.weight': { ratio: 0.65 ** 13, applyDecay: true },
      'encoder.layers.0.attention.q.weight': { ratio: 0.65 ** 12, applyDecay: true },
      'encoder.layers.11.output.dense.bias': { ratio: 0.65, applyDecay: true },
      'encoder.layers.12.x': { ratio: 1, applyDecay: true },
      'pooler.dense.weight': { ratio: 1, applyDecay: true },
    });
  });

  it('defaults: layerwiseDecay 1 (every ratio 1) and nLayers 12', () => {
    const params = NAMES.map((n, i) => param(n, 3, 'float32', i));
    const opt = new AdamWDL(params);
    expect(opt.layerwiseDecay).toBe(1);
    expect(opt.nLayers).toBe(12);
    for (const [, r] of opt.ratios) expect(r).toEqual({ ratio: 1, applyDecay: true });
  });

  it('the layer index is read wherever "encoder.layers.N" appears in the name (a prefix is fine)', () => {
    const opt = new AdamWDL([param('bert.encoder.layers.3.attn.w')], { layerwiseDecay: 0.5, nLayers: 4 });
    expect(opt.ratios.get('bert.encoder.layers.3.attn.w')!.ratio).toBe(0.5);
  });

  for (const kind of ['Map', 'Record'] as const) {
    it(`nameDict as a ${kind}: the rules read the mapped name; params not in it use p.name; ratios stay keyed by p.name`, () => {
      const a = param('a', 3, 'float32', 1);
      const b = param('b', 3, 'float32', 2);
      const c = param('encoder.layers.10.w', 3, 'float32', 3);
      const mapping: Array<[Parameter, string]> = [
        [a, 'encoder.layers.3.attention.q.weight'],
        [b, 'embeddings.position_embeddings.bias'],
      ];
      const nameDict = kind === 'Map' ? new Map(mapping) : Object.fromEntries(mapping.map(([p, n]) => [p.name, n]));
      const seen: string[] = [];
      const opt = new AdamWDL([a, b, c], {
        layerwiseDecay: 0.65,
        nLayers: 12,
        nameDict,
        applyDecayParamFun: (name) => {
          seen.push(name);
          return !name.endsWith('.bias');
        },
      });
      expect(Object.fromEntries(opt.ratios)).toEqual({
        a: { ratio: 0.65 ** 9, applyDecay: true },
        b: { ratio: 0.65 ** 13, applyDecay: false },
        'encoder.layers.10.w': { ratio: 0.65 ** 2, applyDecay: true },
      });
      expect(seen).toContain('embeddings.position_embeddings.bias');
      expect(seen).not.toContain('b');
    });
  }

  it('applyDecayParamFun decides the decay per name; the default decays everything', () => {
    const params = NAMES.map((n, i) => param(n, 3, 'float32', i));
    const opt = new AdamWDL(params, {
      applyDecayParamFun: (name) => !name.includes('bias') && !name.includes('embeddings'),
    });
    expect([...opt.ratios].map(([n, r]) => [n, r.applyDecay])).toEqual([
      ['embeddings.word_embeddings.weight', false],
      ['encoder.layers.0.attention.q.weight', true],
      ['encoder.layers.11.output.dense.bias', false],
      ['encoder.layers.12.x', true],
      ['pooler.dense.weight', true],
    ]);
  });

  it('a custom setParamLrFun gets (layerwiseDecay, name, nLayers) and its result is the ratio', () => {
    const calls: Array<[number, string, number]> = [];
    const opt = new AdamWDL([param('x.w'), param('y.w')], {
      layerwiseDecay: 0.9,
      nLayers: 6,
      nameDict: { 'y.w': 'mapped.y' },
      setParamLrFun: (decay, name, n) => {
        calls.push([decay, name, n]);
        return name === 'x.w' ? 0.25 : 2;
      },
    });
    expect(calls).toContainEqual([0.9, 'x.w', 6]);
    expect(calls).toContainEqual([0.9, 'mapped.y', 6]);
    expect(opt.ratios.get('x.w')!.ratio).toBe(0.25);
    expect(opt.ratios.get('y.w')!.ratio).toBe(2); // ratios above 1 are allowed
  });

  it('ratios are also computed for groups added later', () => {
    const opt = new AdamWDL([param('pooler.w')], { layerwiseDecay: 0.5, nLayers: 2 });
    opt.addParamGroup({ params: [param('encoder.layers.1.w')], lr: 0.1 });
    expect(opt.ratios.get('encoder.layers.1.w')!.ratio).toBe(0.5);
  });
});

describe('AdamWDL: the decoupled decay uses the BASE lr; the Adam step lr * ratio', () => {
  for (const dtype of ['float32', 'bfloat16'] as DType[]) {
    it(`${dtype}: ratio 0 -> one step multiplies the param by exactly float32(1 - lr * wd); without decay it stays unchanged`, () => {
      const lr = 0.01;
      const wd = 0.1;
      const decayed = param('encoder.layers.1.decayed', 1003, dtype, 11);
      const kept = param('encoder.layers.1.kept', 1003, dtype, 12);
      const moving = param('encoder.layers.1.moving', 1003, dtype, 13);
      const opt = new AdamWDL([decayed, kept, moving], {
        lr,
        weightDecay: wd,
        setParamLrFun: (_d, name) => (name.endsWith('moving') ? 1 : 0),
        applyDecayParamFun: (name) => !name.endsWith('kept'),
      });
      const master = (p: Parameter) => p.data.toFloat32Array(); // exact: fp32, or the half value the master starts from
      const before = [decayed, kept, moving].map(master);
      for (const [i, p] of [decayed, kept, moving].entries()) p.grad = gradFor(p, 30 + i);
      opt.step();
      const sd = opt.stateDict();
      const after = [0, 1, 2].map((i) => sd.state[i].master ?? [decayed, kept, moving][i].data.toFloat32Array());
      const factor = Math.fround(1 - lr * wd);
      expectSameBits(
        bitsOf(after[0]),
        bitsOf(Float32Array.from(before[0], (x) => Math.fround(x * factor))),
        'ratio 0, decay on',
      );
      expectSameBits(bitsOf(after[1]), bitsOf(before[1]), 'ratio 0, decay off');
      expect(after[2].some((x, i) => x !== Math.fround(before[2][i] * factor))).toBe(true); // ratio 1 takes an Adam step too
      expect(sd.state[0].step).toBe(1); // state advances even when the step size is 0
    });
  }

  it('a lr change applies to both parts at the next step (the decay reads the current base lr)', () => {
    const p = param('encoder.layers.0.w', 64, 'float32', 14);
    const opt = new AdamWDL([p], { lr: 0.01, weightDecay: 0.2, setParamLrFun: () => 0 });
    opt.paramGroups[0].lr = 0.05;
    const before = p.data.toFloat32Array();
    p.grad = gradFor(p, 15);
    opt.step();
    expectSameBits(
      bitsOf(p.data.toFloat32Array()),
      bitsOf(Float32Array.from(before, (x) => Math.fround(x * Math.fround(1 - 0.05 * 0.2)))),
      'decay with the new lr',
    );
  });

  it('state dict round trip: a restored AdamWDL with the same options continues bit for bit', () => {
    const build = (seed: number) => {
      const params = [
        param('embeddings.w', 99, 'float32', seed),
        param('encoder.layers.1.w', 70001, 'float16', seed + 1),
        param('pooler.bias', 5, 'bfloat16', seed + 2),
      ];
      const opt = new AdamWDL(params, {
        lr: 0.01,
        weightDecay: 0.05,
        layerwiseDecay: 0.7,
        nLayers: 2,
        applyDecayParamFun: (n) => !n.endsWith('bias'),
      });
      return { params, opt };
    };
    const a = build(1);
    const b = build(40);
    const grads = (f: ReturnType<typeof build>, s: number) =>
      f.params.forEach((p, i) => (p.grad = gradFor(p, 1000 * s + i)));
    for (let s = 0; s < 2; s++) {
      grads(a, s);
      a.opt.step();
    }
    b.params.forEach((p, i) =>
      p.data.dtype === 'float32'
        ? p.data.copyFrom(a.params[i].data.toFloat32Array())
        : p.data.copyFrom(a.params[i].data.toBits()),
    );
    b.opt.loadStateDict(a.opt.stateDict());
    for (let s = 2; s < 4; s++) {
      for (const f of [a, b]) {
        grads(f, s);
        f.opt.step();
      }
    }
    a.params.forEach((p, i) => expect(tensorBits(b.params[i].data), p.name).toEqual(tensorBits(p.data)));
    expect(stateBits(b.opt as unknown as AnyOptimizer)).toEqual(stateBits(a.opt as unknown as AnyOptimizer));
  });
});

describe('AdamWDL: bad input is a clear error naming the param, raised before anything changes', () => {
  interface BadCase {
    label: string;
    /** The param the bad rule trips over. */
    name: string;
    options: AdamWDLOptions;
    error: ErrorClass | ErrorClass[];
    message: RegExp[];
  }
  const BAD: BadCase[] = [
    {
      label: 'unparsable layer index',
      name: 'encoder.layers.x.weight',
      options: {},
      error: RangeError,
      message: [/encoder\.layers\.x\.weight/, /layer index/],
    },
    {
      label: 'a negative-looking layer index',
      name: 'encoder.layers.-1.weight',
      options: {},
      error: RangeError,
      message: [/encoder\.layers\.-1\.weight/],
    },
    {
      label: 'nLayers below the layer index',
      name: 'encoder.layers.13.weight',
      options: { nLayers: 12 },
      error: RangeError,
      message: [/encoder\.layers\.13\.weight/, /13/, /nLayers is 12/],
    },
    {
      label: 'setParamLrFun returns NaN',
      name: 'bad.nan',
      options: { setParamLrFun: () => NaN },
      error: RangeError,
      message: [/'bad\.nan'/, /NaN/],
    },
    {
      label: 'setParamLrFun returns a negative number',
      name: 'bad.neg',
      options: { setParamLrFun: () => -0.5 },
      error: RangeError,
      message: [/'bad\.neg'/, /-0\.5/],
    },
    {
      label: 'setParamLrFun returns Infinity',
      name: 'bad.inf',
      options: { setParamLrFun: () => Infinity },
      error: RangeError,
      message: [/'bad\.inf'/, /Infinity/],
    },
    {
      label: 'setParamLrFun returns a string',
      name: 'bad.str',
      options: { setParamLrFun: (() => '0.5') as unknown as AdamWDLOptions['setParamLrFun'] },
      error: [RangeError, TypeError],
      message: [/'bad\.str'/, /0\.5/],
    },
    {
      label: 'setParamLrFun returns undefined',
      name: 'bad.undef',
      options: { setParamLrFun: (() => undefined) as unknown as AdamWDLOptions['setParamLrFun'] },
      error: [RangeError, TypeError],
      message: [/'bad\.undef'/],
    },
    {
      label: 'setParamLrFun throws',
      name: 'bad.throw',
      options: {
        setParamLrFun: () => {
          throw new Error('boom from the rule');
        },
      },
      error: Error,
      message: [/boom from the rule/],
    },
    {
      label: 'applyDecayParamFun returns a non-boolean',
      name: 'bad.dec',
      options: { applyDecayParamFun: (() => 1) as unknown as AdamWDLOptions['applyDecayParamFun'] },
      error: TypeError,
      message: [/'bad\.dec'/, /boolean/],
    },
    {
      label: 'applyDecayParamFun returns undefined',
      name: 'bad.dec2',
      options: { applyDecayParamFun: (() => undefined) as unknown as AdamWDLOptions['applyDecayParamFun'] },
      error: TypeError,
      message: [/'bad\.dec2'/, /boolean/],
    },
  ];

  /** Only the param named `trigger` trips the rule; the others are healthy. */
  function guarded(c: BadCase): AdamWDLOptions {
    const o = { ...c.options };
    if (o.setParamLrFun) {
      const bad = o.setParamLrFun;
      o.setParamLrFun = (d, name, n) => (name === c.name ? bad(d, name, n) : 1);
    }
    if (o.applyDecayParamFun) {
      const bad = o.applyDecayParamFun;
      o.applyDecayParamFun = (name) => (name === c.name ? bad(name) : true);
    }
    return o;
  }

  for (const c of BAD) {
    it(`${c.label}: the constructor throws`, () => {
      expectThrows(() => new AdamWDL([param('pooler.w'), param(c.name)], guarded(c)), c.error, c.message, c.label);
      expectThrows(
        () => new AdamWDL([{ params: [param('pooler.w')] }, { params: [param(c.name)] }], guarded(c)),
        c.error,
        c.message,
        `${c.label} (second group)`,
      );
    });

    it(`${c.label}: addParamGroup throws, leaves the groups as they were, and the optimizer keeps working`, () => {
      const build = () => {
        const w = param('pooler.w', 50, 'float32', 21);
        const opt = new AdamWDL([w], { ...guarded(c), lr: 0.01 });
        return { w, opt };
      };
      const f = build();
      const twin = build();
      for (const x of [f, twin]) {
        x.w.grad = gradFor(x.w, 22);
        x.opt.step();
      }
      const before = {
        groups: groupsOf(f.opt as unknown as AnyOptimizer),
        state: stateBits(f.opt as unknown as AnyOptimizer),
        ratios: [...f.opt.ratios],
      };
      // The healthy param comes first, so a rule checked param by param during
      // registration would already have added it.
      const healthy = param('encoder.layers.0.fine', 4, 'float32', 23);
      const bad = param(c.name, 4, 'float32', 24);
      expectThrows(
        () => f.opt.addParamGroup({ params: [healthy, bad] }),
        c.error,
        c.message,
        `${c.label} addParamGroup`,
      );
      expect(f.opt.paramGroups).toHaveLength(1);
      expect({
        groups: groupsOf(f.opt as unknown as AnyOptimizer),
        state: stateBits(f.opt as unknown as AnyOptimizer),
        ratios: [...f.opt.ratios],
      }).toEqual(before);
      // Still usable: the next step, and a later good group, match a twin that never saw the bad call.
      for (const x of [f, twin]) {
        x.w.grad = gradFor(x.w, 25);
        x.opt.step();
      }
      expect(tensorBits(f.w.data)).toEqual(tensorBits(twin.w.data));
      const extra = [
        param('encoder.layers.0.extra', 9, 'float32', 26),
        param('encoder.layers.0.extra', 9, 'float32', 26),
      ];
      f.opt.addParamGroup({ params: [extra[0]], lr: 0.02 });
      twin.opt.addParamGroup({ params: [extra[1]], lr: 0.02 });
      for (const [i, x] of [f, twin].entries()) {
        x.w.grad = gradFor(x.w, 27);
        extra[i].grad = gradFor(extra[i], 28);
        x.opt.step();
      }
      expect(tensorBits(f.w.data)).toEqual(tensorBits(twin.w.data));
      expect(tensorBits(extra[0].data), 'the param of the later group').toEqual(tensorBits(extra[1].data));
      expect(stateBits(f.opt as unknown as AnyOptimizer)).toEqual(stateBits(twin.opt as unknown as AnyOptimizer));
      // The params of the rejected group are not stepped.
      const healthyBefore = tensorBits(healthy.data);
      healthy.grad = gradFor(healthy, 29);
      f.opt.step();
      expect(tensorBits(healthy.data)).toEqual(healthyBefore);
    });
  }

  it('setParamLrFun / applyDecayParamFun that are not functions: TypeError in the constructor', () => {
    expectThrows(
      () => new AdamWDL([param('w')], { setParamLrFun: 0.5 as unknown as AdamWDLOptions['setParamLrFun'] }),
      TypeError,
      [/setParamLrFun must be a function/],
    );
    expectThrows(
      () => new AdamWDL([param('w')], { applyDecayParamFun: true as unknown as AdamWDLOptions['applyDecayParamFun'] }),
      TypeError,
      [/applyDecayParamFun must be a function/],
    );
  });

  it('bad layerwiseDecay / nLayers: RangeError in the constructor', () => {
    for (const layerwiseDecay of [-0.1, NaN, Infinity]) {
      expectThrows(() => new AdamWDL([param('w')], { layerwiseDecay }), RangeError, [/layerwiseDecay/]);
    }
    for (const nLayers of [-1, 1.5, NaN]) {
      expectThrows(() => new AdamWDL([param('w')], { nLayers }), RangeError, [/nLayers/]);
    }
  });

  it('a nameDict that maps a param to a non-string: TypeError naming the param', () => {
    const w = param('w');
    expectThrows(() => new AdamWDL([w], { nameDict: new Map([[w, 42 as unknown as string]]) }), TypeError, [
      /'w'/,
      /name/,
    ]);
  });

  it('a nameDict that is neither a Map nor a plain object: TypeError', () => {
    expectThrows(
      () => new AdamWDL([param('w')], { nameDict: 'w' as unknown as AdamWDLOptions['nameDict'] }),
      TypeError,
      [/nameDict/],
    );
  });

  it('AdamW hyperparameter checks still apply (lr < 0 rejected; lr 0 allowed, unlike Lion)', () => {
    expectThrows(() => new AdamWDL([param('w')], { lr: -1 }), RangeError, [/AdamWDL options: lr must be >= 0/]);
    expect(() => new AdamWDL([param('w')], { lr: 0 })).not.toThrow();
  });
});
