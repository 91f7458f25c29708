// Low-bit optimizer state at its limits: row-sparse grads (lazy mode) are refused with an
// error naming the param, before anything changes; metrics read the decoded state.
import { describe, expect, it } from 'vitest';
import { AdamW, Lion, Parameter, Tensor } from '../src/index';
import { bitsOf } from './support/compare';
import { expectThrows } from './support/expect_throws';
import { randn, rng } from './support/random';

const V = 1000;
const D = 8; // 8000 elements: above the 4096 of the 8-bit rule

describe('low-bit state with row-sparse grads', () => {
  for (const stateDtype of ['bfloat16', 'uint8'] as const) {
    it(`${stateDtype}: a row-sparse grad is refused, naming the param, and nothing changes`, () => {
      const next = rng(3);
      const p = new Parameter(Tensor.from(randn(V * D, next), { shape: [V, D] }), { name: 'embedding.weight' });
      const opt = new AdamW([p], { lr: 1e-2, lazyMode: true, stateDtype });
      p.grad = Tensor.from(randn(V * D, next), { shape: [V, D] });
      opt.step(); // a dense step is fine
      const before = bitsOf(p.data.toFloat32Array()).slice();
      const state = JSON.stringify(Array.from(opt.stateDict().state[0].exp_avg as ArrayLike<number>));
      p.grad = null;
      p.sparseGrad = { rows: Int32Array.from([3, 7]), values: Tensor.from(randn(2 * D, next), { shape: [2, D] }) };
      expectThrows(() => opt.step(), TypeError, [
        /embedding\.weight/,
        /row-sparse grads \(lazyMode\) need float32 state/,
        new RegExp(`'${stateDtype}'`),
      ]);
      expect(bitsOf(p.data.toFloat32Array())).toEqual(before);
      expect(JSON.stringify(Array.from(opt.stateDict().state[0].exp_avg as ArrayLike<number>))).toBe(state);
    });
  }
});

describe('metrics with low-bit state', () => {
  for (const stateDtype of ['bfloat16', 'uint8'] as const) {
    it(`${stateDtype}: the moment norm is the norm of the decoded state`, () => {
      const next = rng(4);
      const p = new Parameter(Tensor.from(randn(70_000, next)), { name: 'w' });
      const opt = new Lion([p], { lr: 1e-3, weightDecay: 0, stateDtype });
      for (let s = 0; s < 3; s++) {
        p.grad = Tensor.from(randn(70_000, next));
        opt.step();
      }
      const m = opt.stateDict({ stateDtype: 'float32' }).state[0].exp_avg as Float32Array;
      expect(m).toBeInstanceOf(Float32Array);
      const norm = Math.sqrt(m.reduce((s, x) => s + x * x, 0));
      expect(norm).toBeGreaterThan(0);
      expect(opt.metrics()['l2_norm/moment/w']).toBeCloseTo(norm, 6);
    });
  }
});
