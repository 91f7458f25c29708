// GradScaler + AdamW (with and without clipping inside the step) and clip_grad_norm_ /
// clip_grad_value_ against torch 1.13 (test/fixtures/gen_amp_fixtures.py).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdamW, type GradClip, GradScaler, Parameter, Tensor, clipGradNorm, clipGradValue } from '../src/index';
import { bitsOf, expectClose, expectSameBits } from './support/compare';
import { f32, u16, u32 } from './support/fixtures';

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'amp_torch.json'), 'utf8'));

const tensorOf = (b64: string, dtype: string) =>
  dtype === 'float32'
    ? Tensor.from(f32(b64), { device: 'cpu' })
    : Tensor.from(u16(b64), { dtype: dtype as 'bfloat16', device: 'cpu' });

describe('GradScaler + AdamW match torch step for step', () => {
  for (const c of fixture.grad_scaler) {
    it(c.name, () => {
      const params: Parameter[] = c.params.map(
        (p: { init: string }, i: number) => new Parameter(tensorOf(p.init, c.dtype), { name: `p${i}` }),
      );
      const opt = new AdamW(
        c.groups.map((g: Record<string, never>) => ({
          params: (g.params as number[]).map((i) => params[i]),
          lr: g.lr,
          betas: g.betas,
          eps: g.eps,
          weightDecay: g.weight_decay,
          amsgrad: g.amsgrad,
          maximize: g.maximize,
        })),
        { gradClip: c.grad_clip as GradClip | null },
      );
      const s = c.scaler;
      const scaler = new GradScaler({
        initScale: s.init_scale,
        growthFactor: s.growth_factor,
        backoffFactor: s.backoff_factor,
        growthInterval: s.growth_interval,
      });
      c.steps.forEach((step: Record<string, never>, k: number) => {
        const where = `${c.name} step ${k}`;
        expect(scaler.getScale(), `${where} scale before`).toBe(step.scale);
        (step.lr as number[]).forEach((lr, g) => (opt.paramGroups[g].lr = lr));
        (step.grads as Array<string | null>).forEach(
          (g, i) => (params[i].grad = g === null ? null : tensorOf(g, c.grad_dtype)),
        );
        const { skipped } = scaler.step(opt);
        expect(skipped, `${where} skipped`).toBe(step.skipped);
        scaler.update();
        expect(scaler.getScale(), `${where} scale after`).toBe(step.expected_scale);
        expect(scaler.stateDict()._growth_tracker, `${where} growth tracker`).toBe(step.expected_growth_tracker);
        const sd = opt.stateDict();
        params.forEach((p, i) => {
          if (c.dtype === 'float32')
            expectSameBits(
              bitsOf(p.data.toFloat32Array()),
              u32((step.expected_master as string[])[i]),
              `${where} param ${i}`,
            );
          else expectSameBits(p.data.toBits(), u16((step.expected_param as string[])[i]), `${where} param ${i} bits`);
          const expectedStep = (step.expected_step as number[])[i];
          if (expectedStep === 0) return expect(sd.state[i], `${where} param ${i} state`).toBeUndefined();
          expect(sd.state[i].step).toBe(expectedStep);
          if (c.dtype !== 'float32')
            expectSameBits(
              bitsOf(sd.state[i].master!),
              u32((step.expected_master as string[])[i]),
              `${where} master ${i}`,
            );
          expectSameBits(
            bitsOf(sd.state[i].exp_avg),
            u32((step.expected_exp_avg as string[])[i]),
            `${where} exp_avg ${i}`,
          );
          expectSameBits(
            bitsOf(sd.state[i].exp_avg_sq),
            u32((step.expected_exp_avg_sq as string[])[i]),
            `${where} exp_avg_sq ${i}`,
          );
        });
      });
    });
  }
});

describe('clipGradNorm and clipGradValue match torch.nn.utils', () => {
  for (const c of fixture.clip_grad_norm) {
    for (const [r, run] of (c.runs as Array<Record<string, never>>).entries()) {
      it(`${c.name}: normType ${run.norm_type}, maxNorm ${run.max_norm} (run ${r})`, () => {
        const params = (c.grads as string[]).map((g, i) => {
          const p = new Parameter(Tensor.zeros([c.numels[i]], { dtype: c.grad_dtypes[i], device: 'cpu' }), {
            name: `g${i}`,
          });
          p.grad = tensorOf(g, c.grad_dtypes[i]);
          return p;
        });
        const normType = run.norm_type === 'inf' ? Infinity : (run.norm_type as number);
        const total = clipGradNorm(params, run.max_norm, { normType });
        // fused-optim's definition: per-tensor sums in float64 (torch reduces in the grads'
        // dtype), so the reference fields apply where torch's half-precision sums drift.
        const expectedTotal = (run.reference_total_norm_f64 as number | null) ?? (run.expected_total_norm as number);
        expectClose([total], [expectedTotal], 'total norm', { rtol: 2e-7, atol: 0 });
        const reference = run.reference_grads as Array<string | null> | null;
        const torchGrads = run.expected_grads as Array<string | null> | null;
        params.forEach((p, i) => {
          // null: the same as torch's; torch's null: unchanged (coefficient clamped to 1).
          const expected = reference?.[i] ?? torchGrads?.[i] ?? (c.grads as string[])[i];
          const actual = p.grad!.toFloat32Array();
          const want = tensorOf(expected, c.grad_dtypes[i]).toFloat32Array();
          // The coefficient may differ from torch's in its last bit (float32 vs float64 norm).
          expectClose(actual, want, `grad ${i}`, { rtol: c.grad_dtypes[i] === 'float32' ? 3e-7 : 8e-3, atol: 0 });
        });
      });
    }
    if (c.clip_value) {
      it(`${c.name}: clipGradValue(${c.clip_value.value})`, () => {
        const params = (c.grads as string[]).map((g, i) => {
          const p = new Parameter(Tensor.zeros([c.numels[i]], { dtype: c.grad_dtypes[i], device: 'cpu' }), {
            name: `g${i}`,
          });
          p.grad = tensorOf(g, c.grad_dtypes[i]);
          return p;
        });
        clipGradValue(params, c.clip_value.value);
        params.forEach((p, i) => {
          const want = tensorOf(c.clip_value.expected_grads[i], c.grad_dtypes[i]);
          if (c.grad_dtypes[i] === 'float32')
            expectSameBits(bitsOf(p.grad!.toFloat32Array()), bitsOf(want.toFloat32Array()), `grad ${i}`);
          else expectSameBits(p.grad!.toBits(), want.toBits(), `grad ${i}`);
        });
      });
    }
  }
});
