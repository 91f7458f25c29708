// SGD against torch.optim.SGD, step for step and bit for bit on the CPU backend (the
// momentum buffer, masters, half params), and its metrics against torch's values. Fixtures:
// test/fixtures/gen_sgd_fixtures.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type DeviceName, Parameter, SGD, Tensor } from '../src/index';
import { native } from '../src/native';
import { bitsOf, expectClose, expectSameBits } from './support/compare';
import { f32, u16, u32 } from './support/fixtures';

type DT = 'float32' | 'float16' | 'bfloat16';
interface SgdCase {
  name: string;
  dtype: DT;
  grad_dtype: DT;
  groups: Array<{
    lr: number;
    momentum: number;
    dampening: number;
    weight_decay: number;
    nesterov: boolean;
    maximize: boolean;
    params: number[];
  }>;
  params: Array<{ numel: number; init: string }>;
  steps: Array<{
    lr: number[];
    momentum: number[];
    grads: Array<string | null>;
    expected_master: string[];
    expected_param: Array<string | null>;
    expected_momentum_buffer: Array<string | null>;
  }>;
  metrics?: { grads: string[]; values: Array<Record<string, number>> };
}

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'sgd_torch.json'), 'utf8'));
const cases: SgdCase[] = fixture.cases;

const tensorOf = (b64: string, dtype: DT, device: DeviceName = 'cpu') =>
  dtype === 'float32' ? Tensor.from(f32(b64), { dtype, device }) : Tensor.from(u16(b64), { dtype, device });

function build(c: SgdCase, device: DeviceName = 'cpu') {
  const params = c.params.map((p, i) => new Parameter(tensorOf(p.init, c.dtype, device), { name: `p${i}` }));
  const opt = new SGD(
    c.groups.map((g) => ({
      params: g.params.map((i) => params[i]),
      lr: g.lr,
      momentum: g.momentum,
      dampening: g.dampening,
      weightDecay: g.weight_decay,
      nesterov: g.nesterov,
      maximize: g.maximize,
    })),
  );
  return { params, opt };
}

describe('SGD matches torch.optim.SGD bit for bit', () => {
  it('has the cases the issue asks for', () => {
    expect(fixture.encoding).toBe('base64-le');
    expect(cases.some((c) => c.params.some((p) => p.numel > 65536))).toBe(true);
    expect(cases.some((c) => c.metrics)).toBe(true);
    for (const d of ['float16', 'bfloat16']) expect(cases.some((c) => c.dtype === d)).toBe(true);
    expect(cases.some((c) => c.groups.some((g) => g.nesterov))).toBe(true);
    expect(cases.some((c) => c.groups.some((g) => g.momentum === 0))).toBe(true);
    expect(cases.some((c) => c.steps.some((s) => s.grads.includes(null)))).toBe(true);
  });

  for (const c of cases) {
    it(c.name, () => {
      const { params, opt } = build(c);
      c.steps.forEach((step, s) => {
        step.lr.forEach((lr, g) => (opt.paramGroups[g].lr = lr));
        step.momentum.forEach((m, g) => (opt.paramGroups[g].momentum = m));
        step.grads.forEach((g, i) => (params[i].grad = g === null ? null : tensorOf(g, c.grad_dtype)));
        opt.step();
        const sd = opt.stateDict();
        params.forEach((p, i) => {
          const where = `${c.name} step ${s} param ${i}`;
          if (c.dtype === 'float32')
            expectSameBits(bitsOf(p.data.toFloat32Array()), u32(step.expected_master[i]), `${where} param`);
          else expectSameBits(p.data.toBits(), u16(step.expected_param[i]!), `${where} param bits`);
          const state = sd.state[i];
          const buf = step.expected_momentum_buffer[i];
          // torch keeps no state without a buffer; neither does SGD (nor a step count).
          if (buf === null) {
            expect(state, `${where}: no state`).toBeUndefined();
            return;
          }
          expect(Object.keys(state!).sort(), `${where} state keys`).toEqual(
            c.dtype === 'float32' ? ['momentum_buffer'] : ['master', 'momentum_buffer'],
          );
          expectSameBits(bitsOf(state!.momentum_buffer!), u32(buf), `${where} momentum_buffer`);
          if (c.dtype !== 'float32')
            expectSameBits(bitsOf(state!.master!), u32(step.expected_master[i]), `${where} master`);
        });
      });

      if (c.metrics) {
        c.metrics.grads.forEach((g, i) => (params[i].grad = Tensor.from(f32(g), { device: 'cpu' })));
        const m = opt.metrics();
        expect(Object.keys(m)).toHaveLength(6 * params.length);
        c.metrics.values.forEach((values, i) => {
          for (const [metric, expected] of Object.entries(values))
            expectClose([m[`${metric}/p${i}`]], [expected], `${c.name} ${metric}/p${i}`, { rtol: 1e-9, atol: 1e-12 });
        });
      }
    });
  }

  it('the native side re-checks the hyperparameters (nesterov needs momentum > 0 and dampening 0)', () => {
    const w = new Parameter(Tensor.from(new Float32Array([1, 2, 3]), { device: 'cpu' }), { name: 'w' });
    const opt = new SGD([w], { lr: 0.1, momentum: 0.9 });
    w.grad = Tensor.from(new Float32Array([0.5, 0.5, 0.5]), { device: 'cpu' });
    const handle = (opt as unknown as { handle(what: string): { step(h: Float64Array): void } }).handle('test');
    // lr, momentum, dampening, weight_decay, nesterov, maximize
    for (const [table, message] of [
      [[0.1, 0, 0, 0, 1, 0], /param group 0: nesterov momentum requires a momentum > 0 and zero dampening/],
      [[0.1, 0.9, 0.5, 0, 1, 0], /nesterov momentum requires/],
      [[-1, 0.9, 0, 0, 0, 0], /lr must be a finite number >= 0, got -1/],
      [[0.1, -0.9, 0, 0, 0, 0], /momentum must be a finite number >= 0/],
      [[0.1, 0.9, NaN, 0, 0, 0], /dampening must be a finite number/],
    ] as Array<[number[], RegExp]>)
      expect(() => handle.step(new Float64Array(table))).toThrow(message);
    expect(Array.from(w.data.toFloat32Array())).toEqual([1, 2, 3]);
    expect(opt.stateDict().state).toEqual({});
  });

  it('a state dict taken mid-run and loaded into a fresh SGD continues bit for bit (the buffer is not reset)', () => {
    const c = cases.find((x) => x.name === 'float32_nesterov_maximize_dampening')!;
    const a = build(c);
    const b = build(c);
    const feed = (run: typeof a, s: number) =>
      c.steps[s].grads.forEach((g, i) => (run.params[i].grad = g === null ? null : tensorOf(g, c.grad_dtype)));
    for (let s = 0; s < 3; s++) {
      feed(a, s);
      a.opt.step();
    }
    b.params.forEach((p, i) => p.data.copyFrom(a.params[i].data.toFloat32Array()));
    b.opt.loadStateDict(a.opt.stateDict());
    for (let s = 3; s < c.steps.length; s++) {
      feed(b, s);
      b.opt.step();
      b.params.forEach((p, i) =>
        expectSameBits(bitsOf(p.data.toFloat32Array()), u32(c.steps[s].expected_master[i]), `resumed step ${s} p${i}`),
      );
    }
  });
});

// The CUDA backend (a GPU or the emulator) runs the same rule without FMA contraction: the
// same bits as torch's CPU run.
const probe = native().nativeInfo();
describe.skipIf(!probe.cudaUsable)(
  `SGD on CUDA matches torch.optim.SGD bit for bit${probe.cudaUsable ? '' : ' (no CUDA)'}`,
  () => {
    for (const c of cases) {
      it(c.name, () => {
        const { params, opt } = build(c, 'cuda');
        c.steps.forEach((step, s) => {
          step.lr.forEach((lr, g) => (opt.paramGroups[g].lr = lr));
          step.momentum.forEach((m, g) => (opt.paramGroups[g].momentum = m));
          step.grads.forEach((g, i) => (params[i].grad = g === null ? null : tensorOf(g, c.grad_dtype, 'cuda')));
          opt.step();
        });
        opt.synchronize();
        const last = c.steps[c.steps.length - 1];
        const sd = opt.stateDict();
        params.forEach((p, i) => {
          if (c.dtype === 'float32')
            expectSameBits(bitsOf(p.data.toFloat32Array()), u32(last.expected_master[i]), `${c.name} p${i}`);
          else expectSameBits(p.data.toBits(), u16(last.expected_param[i]!), `${c.name} p${i} bits`);
          const buf = last.expected_momentum_buffer[i];
          if (buf === null) expect(sd.state[i], `${c.name} p${i}: no state`).toBeUndefined();
          else expectSameBits(bitsOf(sd.state[i]!.momentum_buffer!), u32(buf), `${c.name} p${i} momentum_buffer`);
        });
      });
    }
  },
);
