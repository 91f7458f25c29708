// The launch plan (which tensors, which scalar slot each reads) is rebuilt only when params,
// grads or state change; hyperparameters reach the kernels through the per-step table.
import { describe, expect, it } from 'vitest';
import { AdamW, AdamWDL, Lion, Parameter, Tensor, TransformerLR } from '../src/index';

function model(n = 20) {
  return Array.from({ length: n }, (_, i) => {
    const p = new Parameter(Tensor.from(new Float32Array(7 + i).fill(0.5), { device: 'cpu' }), {
      name: `encoder.layers.${i % 12}.w${i}`,
    });
    p.grad = Tensor.from(new Float32Array(7 + i).fill(0.1), { device: 'cpu' });
    return p;
  });
}

describe('launch plan', () => {
  for (const [name, make] of [
    ['AdamW', (ps: Parameter[]) => new AdamW(ps, { lr: 1e-3 })],
    ['AdamWDL', (ps: Parameter[]) => new AdamWDL(ps, { lr: 1e-3, layerwiseDecay: 0.8 })],
    ['Lion', (ps: Parameter[]) => new Lion(ps, { lr: 1e-3, weightDecay: 1e-4 })],
  ] as const) {
    it(`${name}: a new lr every step (TransformerLR) rebuilds nothing`, () => {
      const opt = make(model());
      const sched = new TransformerLR(opt, { dModel: 64, warmupSteps: 10 });
      opt.step();
      const after = opt.planUploads;
      expect(after).toBe(1);
      for (let s = 0; s < 50; s++) {
        sched.step();
        opt.paramGroups[0].weightDecay = (s % 3) * 1e-3;
        opt.step();
      }
      expect(opt.planUploads).toBe(after);
    });
  }

  it('is rebuilt when the set of params with a grad changes, and only then', () => {
    const ps = model(5);
    const opt = new AdamW(ps);
    opt.step();
    expect(opt.planUploads).toBe(1);
    ps[2].grad = null;
    opt.step();
    expect(opt.planUploads).toBe(2);
    opt.step();
    expect(opt.planUploads).toBe(2);
    ps[2].grad = Tensor.zeros([9], { device: 'cpu' });
    opt.step();
    // New grad tensor and a new (step count) slot for param 2.
    expect(opt.planUploads).toBe(3);
  });
});
