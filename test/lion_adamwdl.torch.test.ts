// Lion (llm-foundry's DecoupledLionW run in torch) and AdamWDL (PaddleNLP's order of
// operations re-implemented in torch), step for step and bit for bit. Fixtures:
// test/fixtures/gen_lion_adamwdl_fixtures.py.
import { describe, expect, it } from 'vitest';
import { AdamWDL, Lion, Parameter, Tensor } from '../src/index';
import type { FusedOptimizer } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { bitsOf, expectClose, expectSameBits } from './support/compare';
import { type TorchCase, f32, loadTorchCases, u16, u32 } from './support/fixtures';

const tensorOf = (b64: string, dtype: TorchCase['dtype']) =>
  dtype === 'float32'
    ? Tensor.from(f32(b64), { dtype, device: 'cpu' })
    : Tensor.from(u16(b64), { dtype, device: 'cpu' });

// Replays a case's steps on `opt` and checks every param, master and moment after each.
function replay(c: TorchCase, params: Parameter[], opt: FusedOptimizer<ParamGroup, object, object>) {
  c.steps.forEach((step, s) => {
    step.lr.forEach((lr, g) => (opt.paramGroups[g].lr = lr));
    step.grads.forEach((g, i) => (params[i].grad = g === null ? null : tensorOf(g, c.grad_dtype)));
    opt.step();
    const sd = opt.stateDict();
    const flat = opt.paramGroups.flatMap((g) => g.params);
    params.forEach((p, k) => {
      const i = flat.indexOf(p);
      const where = `${c.name} step ${s} param ${k}`;
      const state = sd.state[i] as Record<string, Float32Array> | undefined;
      if (c.dtype === 'float32')
        expectSameBits(bitsOf(p.data.toFloat32Array()), u32(step.expected_master[k]), `${where} param`);
      else expectSameBits(p.data.toBits(), u16(step.expected_param[k]!), `${where} param bits`);
      if (step.expected_step[k] === 0) {
        expect(state, `${where}: no state before the first grad`).toBeUndefined();
        return;
      }
      if (c.dtype !== 'float32') expectSameBits(bitsOf(state!.master), u32(step.expected_master[k]), `${where} master`);
      expectSameBits(bitsOf(state!.exp_avg), u32(step.expected_exp_avg[k]!), `${where} exp_avg`);
      const v = step.expected_exp_avg_sq[k];
      if (v) expectSameBits(bitsOf(state!.exp_avg_sq), u32(v), `${where} exp_avg_sq`);
    });
  });
}

describe('Lion matches DecoupledLionW bit for bit', () => {
  const cases = loadTorchCases('lion_torch.json');
  it('has the cases the issue asks for', () => {
    expect(cases.some((c) => c.params.some((p) => p.numel > 65536))).toBe(true);
    expect(cases.some((c) => c.metrics)).toBe(true);
    for (const d of ['float16', 'bfloat16']) expect(cases.some((c) => c.dtype === d)).toBe(true);
  });

  for (const c of cases) {
    it(c.name, () => {
      const params = c.params.map((p, i) => new Parameter(tensorOf(p.init, c.dtype), { name: `p${i}` }));
      const opt = new Lion(
        c.groups.map((g) => ({
          params: g.params.map((i) => params[i]),
          lr: g.lr,
          betas: g.betas,
          weightDecay: g.weight_decay,
        })),
      );
      opt.paramGroups.forEach((g, i) => expect(g.initialLr).toBe(c.groups[i].initial_lr));
      replay(c, params, opt as unknown as FusedOptimizer<ParamGroup, object, object>);
      expect(Object.values(opt.stateDict().state).every((s) => !('step' in s))).toBe(true);

      if (c.metrics) {
        c.metrics.grads.forEach((g, i) => (params[i].grad = Tensor.from(f32(g), { device: 'cpu' })));
        const m = opt.metrics();
        c.metrics.values.forEach((values, i) => {
          for (const [metric, expected] of Object.entries(values)) {
            expectClose([m[`${metric}/p${i}`]], [expected], `${c.name} ${metric}/p${i}`, { rtol: 1e-9, atol: 1e-12 });
          }
        });
      }
    });
  }
});

describe('AdamWDL matches the torch re-implementation bit for bit', () => {
  const cases = loadTorchCases('adamwdl_torch.json');
  for (const c of cases) {
    const g = c.groups[0];
    const applyDecay = new Map(c.params.map((p) => [p.name!, p.apply_decay!]));
    const build = (ratioFrom: 'default rule' | 'fixture') => {
      const params = c.params.map((p) => new Parameter(tensorOf(p.init, c.dtype), { name: p.name }));
      const ratios = new Map(c.params.map((p) => [p.name!, p.ratio!]));
      const opt = new AdamWDL(
        c.groups.map((gr) => ({
          params: gr.params.map((i) => params[i]),
          lr: gr.lr,
          betas: gr.betas,
          eps: gr.eps,
          weightDecay: gr.weight_decay,
        })),
        {
          layerwiseDecay: g.layerwise_decay,
          nLayers: g.n_layers,
          applyDecayParamFun: (name) => applyDecay.get(name)!,
          ...(ratioFrom === 'fixture' ? { setParamLrFun: (_d: number, name: string) => ratios.get(name)! } : {}),
        },
      );
      return { params, opt };
    };

    it(`${c.name}: the default rule gives the recorded ratios`, () => {
      const { opt } = build('default rule');
      for (const p of c.params) expect(opt.ratios.get(p.name!)!.ratio).toBeCloseTo(p.ratio!, 15);
    });

    for (const ratioFrom of ['default rule', 'fixture'] as const) {
      it(`${c.name} (ratios from the ${ratioFrom})`, () => {
        const { params, opt } = build(ratioFrom);
        replay(c, params, opt as unknown as FusedOptimizer<ParamGroup, object, object>);
      });
    }
  }
});
