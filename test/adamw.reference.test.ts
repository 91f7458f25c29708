// AdamW against a float64 reference (test/support/adamw_reference.ts) over sizes that
// cross chunk boundaries, all dtypes, two groups, missing grads, lr changes mid-run,
// amsgrad, maximize, and the asynchronous step.
import { describe, expect, it } from 'vitest';
import { AdamW, type DType, Parameter, Tensor } from '../src/index';
import { RefAdamWParam, type RefHyper } from './support/adamw_reference';
import { expectClose } from './support/compare';
import { roundTo } from './support/half_reference';
import { randn, rng } from './support/random';

const SIZES = [1, 3, 1000, 4099, 131077]; // 131077: two full 65536-element chunks and a tail

interface Scenario {
  name: string;
  dtype: DType;
  gradDtype: DType;
  hyper: [RefHyper, RefHyper];
  async?: boolean;
}

const base: RefHyper = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };
const scenarios: Scenario[] = [
  { name: 'float32', dtype: 'float32', gradDtype: 'float32', hyper: [base, { ...base, lr: 3e-3, weightDecay: 0 }] },
  {
    name: 'float32 amsgrad + maximize',
    dtype: 'float32',
    gradDtype: 'float32',
    hyper: [
      { ...base, amsgrad: true },
      { ...base, maximize: true, weightDecay: 0.1 },
    ],
  },
  {
    name: 'float32 async',
    dtype: 'float32',
    gradDtype: 'float32',
    hyper: [base, { ...base, betas: [0.8, 0.95], eps: 1e-6 }],
    async: true,
  },
  {
    name: 'float16 / float16 grads',
    dtype: 'float16',
    gradDtype: 'float16',
    hyper: [
      { ...base, lr: 1e-2 },
      { ...base, lr: 5e-3, weightDecay: 0 },
    ],
  },
  {
    name: 'float16 / float32 grads',
    dtype: 'float16',
    gradDtype: 'float32',
    hyper: [{ ...base, lr: 1e-2, amsgrad: true }, base],
  },
  {
    name: 'bfloat16 / bfloat16 grads',
    dtype: 'bfloat16',
    gradDtype: 'bfloat16',
    hyper: [
      { ...base, lr: 1e-2 },
      { ...base, maximize: true },
    ],
  },
  {
    name: 'bfloat16 / float32 grads async',
    dtype: 'bfloat16',
    gradDtype: 'float32',
    hyper: [{ ...base, lr: 1e-2 }, base],
    async: true,
  },
];

const STEPS = 6;
// Which params have no grad at which step: param 1 skips step 2, param 3 has none until step 3.
const hasGrad = (param: number, step: number) => !(param === 1 && step === 2) && !(param === 3 && step < 3);

describe('AdamW matches a float64 reference', () => {
  for (const sc of scenarios) {
    it(sc.name, async () => {
      const next = rng(1234);
      const inits = SIZES.map((n) => randn(n, next));
      // Params 0,2,4 in group 0; 1,3 in group 1.
      const params = inits.map(
        (v, i) => new Parameter(Tensor.from(v, { dtype: sc.dtype, device: 'cpu' }), { name: `w${i}` }),
      );
      const groupOf = (i: number) => (i % 2 === 0 ? 0 : 1);
      const refs = params.map((p) => new RefAdamWParam(p.data.toFloat32Array()));
      const opt = new AdamW([0, 1].map((g) => ({ params: params.filter((_, i) => groupOf(i) === g), ...sc.hyper[g] })));
      const hyper = sc.hyper.map((h) => ({ ...h }));
      for (let s = 0; s < STEPS; s++) {
        if (s === 3) {
          hyper[0].lr *= 0.5; // lr changed mid-run
          opt.paramGroups[0].lr = hyper[0].lr;
        }
        const grads = params.map((p, i) => (hasGrad(i, s) ? randn(p.data.numel, next, 0.1 * (i + 1)) : null));
        params.forEach((p, i) => {
          const g = grads[i];
          p.grad = g ? Tensor.from(g, { dtype: sc.gradDtype, device: 'cpu' }) : null;
          // The reference sees the grad the optimizer sees, after rounding to grad dtype.
          refs[i].update(g ? Array.from(g, (x) => roundTo(sc.gradDtype, x)) : null, hyper[groupOf(i)]);
        });
        if (sc.async) await opt.stepAsync();
        else opt.step();
      }
      const sd = opt.stateDict();
      const flat = opt.paramGroups.flatMap((g) => g.params); // state-dict index order
      params.forEach((p, k) => {
        const i = flat.indexOf(p);
        const where = `${sc.name} param ${k} (${SIZES[k]} elements)`;
        const master = sc.dtype === 'float32' ? p.data.toFloat32Array() : sd.state[i].master!;
        // fp32 rounding of a few operations per step: relative 1e-6 of the value plus a
        // small multiple of lr * fp32 epsilon per step for the update itself.
        const ref = refs[k];
        expectClose(master, ref.p, `${where} master`, { rtol: 2e-6, atol: 1e-7 });
        // Moments can cancel to near zero, so their error is bounded against the grad scale.
        const gradScale = 0.1 * (k + 1);
        expectClose(sd.state[i].exp_avg, ref.m, `${where} exp_avg`, { rtol: 1e-5, atol: 1e-6 * gradScale });
        expectClose(sd.state[i].exp_avg_sq, ref.v, `${where} exp_avg_sq`, { rtol: 1e-5, atol: 1e-6 * gradScale ** 2 });
        expect(sd.state[i].step).toBe(ref.step);
        if (sc.dtype !== 'float32') {
          // The half param is the master rounded to nearest even.
          const expected = Array.from(master, (x) => roundTo(sc.dtype, x));
          expectClose(p.data.toFloat32Array(), expected, `${where} param = round(master)`, { rtol: 0, atol: 0 });
        }
      });
      expect(refs[3].step).toBe(STEPS - 3);
    });
  }
});
