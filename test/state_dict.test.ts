// opt.stateDict() / opt.loadStateDict() of AdamW, AdamWDL and Lion for every param dtype:
// torch's layout (snake_case, indices across groups, only params with state), host copies,
// torch's errors (group count, group size) and the checks torch lacks (buffer lengths, a
// rejected dict changes nothing), and that a loaded dict resumes bit for bit.
import { describe, expect, it } from 'vitest';
import { AdamW, type DType, Lion, Parameter, Tensor } from '../src/index';
import { bitsOf } from './support/compare';
import { fingerprint } from './support/checkpoint_state';
import { type AnyOptimizer, KINDS, type Kind, type ParamSpec, makeSetup } from './support/optimizer_setups';

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];

function specsFor(dtype: DType): ParamSpec[] {
  return [
    {
      name: 'encoder.layers.0.attention.weight',
      n: 70001,
      dtype,
      gradDtype: 'float32',
      group: 0,
      stepped: true,
      atMetrics: 'random',
    },
    {
      name: 'encoder.layers.1.output.bias',
      n: 7,
      dtype,
      gradDtype: dtype,
      group: 1,
      stepped: true,
      atMetrics: 'random',
    },
    {
      name: 'embeddings.word_embeddings.weight',
      n: 1001,
      shape: [7, 143],
      dtype,
      gradDtype: 'float32',
      group: 0,
      stepped: true,
      atMetrics: 'random',
    },
    {
      name: 'head.never_stepped.weight',
      n: 13,
      dtype,
      gradDtype: 'float32',
      group: 1,
      stepped: false,
      atMetrics: null,
    },
  ];
}

function trained(kind: Kind, dtype: DType, steps = 3, seed = 1) {
  const setup = makeSetup(kind, { specs: specsFor(dtype), seed });
  for (let s = 0; s < steps; s++) {
    setup.stepGrads(s);
    setup.opt.step();
  }
  return setup;
}

function snapshot(opt: AnyOptimizer, params: Parameter[]) {
  return fingerprint(opt as never, params);
}

type Dict = { state: Record<number, Record<string, unknown>>; param_groups: Array<Record<string, unknown>> };

describe.each(KINDS)('%s', (kind) => {
  describe.each(DTYPES)('%s params', (dtype) => {
    it("stateDict() is in torch's layout, with host copies and numeric steps", () => {
      const { opt, params } = trained(kind, dtype);
      const sd = opt.stateDict() as unknown as Dict;
      // Params are numbered across groups in order: group 0 = specs 0, 2; group 1 = specs 1, 3.
      expect(sd.param_groups.map((g) => g.params)).toEqual([
        [0, 1],
        [2, 3],
      ]);
      const flat = opt.paramGroups.flatMap((g) => g.params);
      expect(flat.map((p) => p.name)).toEqual([params[0], params[2], params[1], params[3]].map((p) => p.name));
      // Only stepped params have state: the never-stepped one (index 3) does not.
      expect(Object.keys(sd.state)).toEqual(['0', '1', '2']);
      const half = dtype !== 'float32';
      const keys = kind === 'Lion' ? ['exp_avg'] : ['exp_avg', 'exp_avg_sq'];
      for (const [i, s] of Object.entries(sd.state)) {
        const p = flat[Number(i)];
        const group = Number(i) < 2 ? 0 : 1;
        const amsgrad = kind !== 'Lion' && group === 0; // GROUPS: group 0 of AdamW/AdamWDL has amsgrad
        const expected = [
          ...(kind === 'Lion' ? [] : ['step']),
          ...keys,
          ...(amsgrad ? ['max_exp_avg_sq'] : []),
          ...(half ? ['master'] : []),
        ];
        expect(Object.keys(s).sort()).toEqual(expected.sort());
        if (kind !== 'Lion') expect(s.step).toBe(3);
        for (const k of expected.filter((x) => x !== 'step')) {
          expect(s[k], `${p.name} ${k}`).toBeInstanceOf(Float32Array);
          expect((s[k] as Float32Array).length).toBe(p.data.numel);
        }
      }
      const g0 = sd.param_groups[0];
      if (kind === 'Lion')
        expect(Object.keys(g0).sort()).toEqual([
          'betas',
          'initial_lr',
          'lr',
          'params',
          'state_block_size',
          'state_dtype',
          'weight_decay',
        ]);
      else
        expect(Object.keys(g0).sort()).toEqual(
          expect.arrayContaining(['amsgrad', 'betas', 'eps', 'lr', 'maximize', 'params', 'weight_decay']),
        );
      expect(g0).not.toHaveProperty('weightDecay');

      // Host copies: writing into them changes nothing in the optimizer.
      const before = snapshot(opt, params);
      for (const s of Object.values(sd.state))
        for (const v of Object.values(s)) if (v instanceof Float32Array) v.fill(123);
      (sd.param_groups[0].betas as number[])[0] = 0.5;
      expect(snapshot(opt, params)).toEqual(before);
      expect(opt.paramGroups[0].betas).not.toEqual([0.5, expect.anything()]);
      // Two calls give distinct arrays.
      const a = opt.stateDict() as unknown as Dict;
      const b = opt.stateDict() as unknown as Dict;
      expect(a.state[0].exp_avg).not.toBe(b.state[0].exp_avg);
    });

    it('loadStateDict() into a fresh optimizer restores everything and resumes bit for bit', () => {
      const a = trained(kind, dtype, 3);
      const b = makeSetup(kind, { specs: specsFor(dtype) }); // the same grads as a
      for (const p of b.params) p.data.copyFrom(new Float32Array(p.data.numel).fill(0.5)); // other values
      b.opt.paramGroups[1].lr = 0.5; // hyperparameters come from the dict
      b.opt.loadStateDict(a.opt.stateDict());
      // Half params with masters are rewritten from them; float32 params are not in the dict.
      b.params.forEach((p, i) => {
        if (dtype === 'float32' || !specsFor(dtype)[i].stepped)
          p.data.copyFrom(
            a.params[i].data.dtype === 'float32' ? a.params[i].data.toFloat32Array() : a.params[i].data.toBits(),
          );
      });
      expect(snapshot(b.opt, b.params)).toEqual(snapshot(a.opt, a.params));
      for (let s = 3; s < 6; s++) {
        a.stepGrads(s);
        b.stepGrads(s);
        a.opt.step();
        b.opt.step();
      }
      expect(snapshot(b.opt, b.params)).toEqual(snapshot(a.opt, a.params));
    });

    it("rejects torch's mismatches and bad buffers, and a rejected dict changes nothing", () => {
      const { opt, params } = trained(kind, dtype);
      const good = () => opt.stateDict() as unknown as Dict;
      const before = snapshot(opt, params);
      const cases: Array<[string, (d: Dict) => void, RegExp]> = [
        ['one group fewer', (d) => d.param_groups.pop(), /the dict has 1 param groups but the optimizer has 2/],
        [
          'a group of a different size',
          (d) => (d.param_groups[1].params as number[]).pop(),
          /param_groups\[1\] has 1 params but the optimizer's group has 2/,
        ],
        [
          'a short buffer in the last entry',
          (d) => (d.state[2].exp_avg = new Float32Array(3)),
          /state 2 .*exp_avg has 3 elements but the param has 7/,
        ],
        ['a missing buffer', (d) => delete d.state[1].exp_avg, /exp_avg must be a Float32Array/],
        ['a state for no param', (d) => (d.state[9] = d.state[0]), /state 9 does not belong to any param group/],
        ['a bad hyperparameter', (d) => (d.param_groups[1].lr = -1), /lr must be >= 0|lr must be > 0/],
        ['a bad step', (d) => ((d.state[0] as Record<string, unknown>).step = 1.5), /step must be an integer, got 1.5/],
        ['not a dict', (d) => Object.assign(d, { state: null }), /state must be an object, got null/],
      ];
      if (dtype === 'float32')
        cases.push([
          'a master for a float32 param',
          (d) => (d.state[0].master = new Float32Array(70001)),
          /keeps no master weights/,
        ]);
      for (const [what, edit, message] of cases) {
        const d = good();
        // Change every other entry too, so a partly applied dict would show.
        for (const s of Object.values(d.state ?? {}))
          for (const v of Object.values(s)) if (v instanceof Float32Array) v.fill(0.25);
        d.param_groups.forEach((g) => (g.lr = 0.125));
        edit(d);
        expect(() => opt.loadStateDict(d as never), what).toThrow(message);
        expect(snapshot(opt, params), what).toEqual(before);
      }
    });
  });

  it('state tensors given as Float64Array or number[]: converted to float32 once the loadStateDict patch (docs/checkpoints.md) is in', () => {
    const a = trained(kind, 'float32');
    const b = makeSetup(kind, { specs: specsFor('float32') });
    const sd = a.opt.stateDict() as unknown as Dict;
    sd.state[0].exp_avg = Float64Array.from(sd.state[0].exp_avg as Float32Array);
    sd.state[1].exp_avg = Array.from(sd.state[1].exp_avg as Float32Array);
    // Rejected today ("must be a Float32Array"); the issue asks for conversion.
    let error: unknown;
    try {
      b.opt.loadStateDict(sd as never);
    } catch (e) {
      error = e;
    }
    if (error) {
      expect(String(error)).toMatch(/must be a Float32Array/);
      return; // documented gap: see docs/checkpoints.md, "Gaps in the optimizers"
    }
    expect(snapshot(b.opt, [])).toEqual(snapshot(a.opt, []));
  });
});

describe('gaps against torch and the issue, documented in docs/checkpoints.md', () => {
  it('a param the dict has no state for: torch starts it afresh; fused-optim keeps its state unless patched', () => {
    const p = new Parameter(Tensor.from([1, 2, 3], { dtype: 'bfloat16' }), { name: 'w' });
    const opt = new AdamW([p], { lr: 0.1 });
    const fresh = opt.stateDict();
    p.grad = Tensor.from([1, 1, 1]);
    opt.step();
    opt.loadStateDict(fresh);
    const sd = opt.stateDict();
    if (Object.keys(sd.state).length === 0) {
      // torch's semantics (the loadStateDict patch in docs/checkpoints.md): the next step is a
      // first step from the param's current value, like a new optimizer's.
      const q = new Parameter(Tensor.from(p.data.toFloat32Array(), { dtype: 'bfloat16' }), { name: 'w' });
      const other = new AdamW([q], { lr: 0.1 });
      p.grad = Tensor.from([0.5, -1, 2]);
      q.grad = Tensor.from([0.5, -1, 2]);
      opt.step();
      other.step();
      expect(fingerprint(opt as never, [p])).toEqual(fingerprint(other as never, [q]));
    } else {
      // fused-optim today: the param keeps step 1 and its moments (documented gap).
      expect(sd.state[0].step).toBe(1);
    }
  });

  it("Lion's state dict has no step (as DecoupledLionW); it loads as stepped", () => {
    const p = new Parameter(Tensor.from([1, 2, 3], { dtype: 'bfloat16' }), { name: 'w' });
    const opt = new Lion([p], { lr: 0.1 });
    p.grad = Tensor.from([1, -1, 1]);
    opt.step();
    const sd = opt.stateDict();
    expect(sd.state[0]).not.toHaveProperty('step');
    expect(Array.from(bitsOf(sd.state[0].master!))).toHaveLength(3);
  });
});
