// Lazy mode: a row-sparse grad updates only the rows it holds; the other rows' params and
// moments stay exactly as they were.
import { describe, expect, it } from 'vitest';
import { AdamW, type DType, Lion, Parameter, Tensor } from '../src/index';
import type { FusedOptimizer } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { bitsOf } from './support/compare';
import { randn, rng } from './support/random';

type AnyOptimizer = FusedOptimizer<ParamGroup, object, object>;
const V = 50;
const D = 7;

function table(dtype: DType, seed: number) {
  return new Parameter(Tensor.from(randn(V * D, rng(seed)), { shape: [V, D], dtype, device: 'cpu' }), {
    name: 'embedding.weight',
  });
}

function state(opt: AnyOptimizer, key: string): Float32Array {
  return ((opt.stateDict() as { state: Record<number, Record<string, Float32Array>> }).state[0] ?? {})[key];
}

const values = (p: Parameter) =>
  p.data.dtype === 'float32' ? p.data.toFloat32Array() : Float32Array.from(p.data.toBits());

describe('lazy mode', () => {
  for (const [name, make] of [
    ['AdamW', (p: Parameter) => new AdamW([p], { lr: 1e-2, lazyMode: true })],
    ['Lion', (p: Parameter) => new Lion([p], { lr: 1e-3, weightDecay: 1e-4, lazyMode: true })],
  ] as const) {
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      it(`${name} ${dtype}: the rows present equal a dense step on them; the others are untouched`, () => {
        const sparse = table(dtype, 1);
        const dense = table(dtype, 1);
        const optSparse = make(sparse) as unknown as AnyOptimizer;
        const optDense = make(dense) as unknown as AnyOptimizer;
        const rows = Int32Array.from([3, 0, 41, 17]);
        const g = randn(rows.length * D, rng(2), 0.1);
        // First a dense step everywhere, so every row has state.
        const full = randn(V * D, rng(3), 0.1);
        sparse.grad = Tensor.from(full, { shape: [V, D], device: 'cpu' });
        dense.grad = Tensor.from(full, { shape: [V, D], device: 'cpu' });
        optSparse.step();
        optDense.step();
        const before = values(sparse);
        const mBefore = state(optSparse, 'exp_avg');
        sparse.sparseGrad = { rows, values: Tensor.from(g, { shape: [rows.length, D], device: 'cpu' }) };
        optSparse.step();
        // The dense twin steps a grad with the same rows and zeros elsewhere...
        const scattered = new Float32Array(V * D);
        rows.forEach((row, r) => scattered.set(g.subarray(r * D, (r + 1) * D), row * D));
        dense.grad = Tensor.from(scattered, { shape: [V, D], device: 'cpu' });
        optDense.step();
        const after = values(sparse);
        const denseAfter = values(dense);
        const m = state(optSparse, 'exp_avg');
        for (let row = 0; row < V; row++) {
          const present = rows.includes(row);
          for (let c = 0; c < D; c++) {
            const k = row * D + c;
            if (present) {
              // ...and the rows present agree with it bit for bit.
              expect(after[k], `row ${row}`).toBe(denseAfter[k]);
              expect(m[k]).toBe(state(optDense, 'exp_avg')[k]);
            } else {
              expect(after[k], `row ${row} untouched`).toBe(before[k]);
              expect(bitsOf(m)[k]).toBe(bitsOf(mBefore)[k]);
            }
          }
        }
      });
    }
  }

  it('rejects duplicate and out-of-range rows, wrong shapes, and sparse grads without lazyMode', () => {
    const p = table('float32', 4);
    const v = (n: number) => Tensor.zeros([n, D], { device: 'cpu' });
    expect(() => (p.sparseGrad = { rows: Int32Array.from([1, 1]), values: v(2) })).toThrow(/row 1 appears twice/);
    expect(() => (p.sparseGrad = { rows: Int32Array.from([50]), values: v(1) })).toThrow(
      /rows\[0\] = 50 is outside \[0, 50\)/,
    );
    expect(() => (p.sparseGrad = { rows: Int32Array.from([-1]), values: v(1) })).toThrow(/outside/);
    expect(() => (p.sparseGrad = { rows: Int32Array.from([1, 2]), values: v(3) })).toThrow(/expected \[2, 7\]/);
    expect(() => (p.sparseGrad = { rows: [1] as unknown as Int32Array, values: v(1) })).toThrow(
      /must be \{ rows: Int32Array, values: Tensor \}/,
    );
    expect(p.sparseGrad).toBeNull();
    const opt = new AdamW([p]);
    p.sparseGrad = { rows: Int32Array.from([1]), values: v(1) };
    const before = p.data.toFloat32Array();
    expect(() => opt.step()).toThrow(
      /param 'embedding.weight' has a row-sparse grad: construct the optimizer with lazyMode: true/,
    );
    expect(Array.from(p.data.toFloat32Array())).toEqual(Array.from(before));
  });

  it('the native side re-checks rows (duplicates through the raw handle)', () => {
    const p = table('float32', 5);
    const opt = new AdamW([p], { lazyMode: true });
    const handle = (
      opt as unknown as { handle(): { setSparseGrad(i: number, v: unknown, r: Int32Array, w: number): void } }
    ).handle();
    expect(() =>
      handle.setSparseGrad(0, Tensor.zeros([2, D], { device: 'cpu' }).handle, Int32Array.from([4, 4]), D),
    ).toThrow(/row 4 appears twice/);
    expect(() =>
      handle.setSparseGrad(0, Tensor.zeros([1, D], { device: 'cpu' }).handle, Int32Array.from([99]), D),
    ).toThrow(/outside \[0, 50\)/);
  });
});
