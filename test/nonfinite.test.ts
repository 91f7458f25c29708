// Non-finite grads without a GradScaler (issue 13 item 12; docs/behaviour.md, "Non-finite grads").
// The optimizers do what torch's do, elementwise: AdamW and AdamWDL turn an element whose grad
// is inf or NaN into NaN; Lion's sign(NaN) is 0, so a NaN grad freezes the element (its
// exp_avg becomes NaN and stays NaN). Clipping by norm inside step() with a non-finite norm
// poisons the step as torch's clip_grad_norm_(error_if_nonfinite=False) does: a NaN norm makes
// every grad it covers NaN, an inf norm makes the finite ones 0 and the inf ones NaN.
import { describe, expect, it } from 'vitest';
import { AdamW, type GradClip, Lion, Parameter, Tensor } from '../src/index';
import { bitsOf } from './support/compare';

const N = [5, 70001]; // a small tensor and one of more than one chunk

function setup(kind: 'AdamW' | 'Lion', gradClip: GradClip | null, edit: (grads: Float32Array[]) => void) {
  const ps = N.map((n, t) => {
    const p = new Parameter(
      Tensor.from(
        Float32Array.from({ length: n }, (_, i) => 0.5 + ((i * 7 + t) % 11) / 16),
        { device: 'cpu' },
      ),
      {
        name: `t${t}`,
      },
    );
    return p;
  });
  const grads = N.map((n, t) => Float32Array.from({ length: n }, (_, i) => (((i * 5 + t) % 9) - 4) / 8 + 0.01));
  edit(grads);
  ps.forEach((p, t) => (p.grad = Tensor.from(grads[t], { device: 'cpu' })));
  const opt =
    kind === 'AdamW'
      ? new AdamW(ps, { lr: 0.01, weightDecay: 0.1, gradClip })
      : new Lion(ps, { lr: 0.01, weightDecay: 0.1, gradClip });
  return { ps, opt };
}

const values = (ps: Parameter[]) => ps.map((p) => p.data.toFloat32Array());
const nanAt = (grads: Float32Array[]) => (grads[0][1] = NaN);
const infAt = (grads: Float32Array[]) => (grads[1][70000] = Infinity);

describe('no clipping: elementwise, as torch', () => {
  it('AdamW: the element with an inf or NaN grad becomes NaN, every other element steps as usual', () => {
    for (const edit of [nanAt, infAt]) {
      const bad = setup('AdamW', null, edit);
      const good = setup('AdamW', null, () => {});
      bad.opt.step();
      good.opt.step();
      const [b, g] = [values(bad.ps), values(good.ps)];
      const at = edit === nanAt ? [0, 1] : [1, 70000];
      expect(b[at[0]][at[1]]).toBeNaN();
      b[at[0]][at[1]] = g[at[0]][at[1]];
      b.forEach((v, t) => expect(Array.from(bitsOf(v))).toEqual(Array.from(bitsOf(g[t]))));
    }
  });

  it('Lion: a NaN grad freezes the element (sign(NaN) = 0, its exp_avg stays NaN); only the decay moves it', () => {
    const { ps, opt } = setup('Lion', null, nanAt);
    // The same element with a zero grad and no momentum: only the decoupled decay moves it.
    const still = setup('Lion', null, (grads) => (grads[0][1] = 0));
    for (const s of [opt, still.opt]) s.step();
    ps[0].grad!.copyFrom(Float32Array.of(0.5, 0.5, 0.5, 0.5, 0.5));
    still.ps[0].grad!.copyFrom(Float32Array.of(0.5, 0, 0.5, 0.5, 0.5));
    for (let s = 0; s < 2; s++) for (const o of [opt, still.opt]) o.step();
    expect(opt.stateDict().state[0].exp_avg[1]).toBeNaN();
    expect(ps[0].data.toFloat32Array()[1]).toBe(still.ps[0].data.toFloat32Array()[1]);
    expect(ps[0].data.toFloat32Array()[0]).toBe(still.ps[0].data.toFloat32Array()[0]); // its neighbours step
  });
});

it('Lion: an inf grad moves its element once, then its exp_avg turns NaN and the element is frozen', () => {
  const { ps, opt } = setup('Lion', null, infAt);
  // The same element with no grad and no momentum: moved by the decoupled decay alone.
  const still = setup('Lion', null, (grads) => (grads[1][70000] = 0));
  const at = (q: Parameter[]) => q[1].data.toFloat32Array()[70000];
  opt.step();
  still.opt.step();
  const [once, decayedOnce] = [at(ps), at(still.ps)];
  expect(once).toBeLessThan(decayedOnce); // the inf moved it by lr, beyond the decay
  expect(opt.stateDict().state[1].exp_avg[70000]).toBe(Infinity);
  ps[1].grad!.copyFrom(new Float32Array(70001).fill(0.5));
  opt.step();
  still.opt.step();
  expect(opt.stateDict().state[1].exp_avg[70000]).toBeNaN();
  // The second step applied the decay alone: the same factor as on the element without a grad.
  expect(at(ps) / once).toBeCloseTo(at(still.ps) / decayedOnce, 6);
});

describe('gradClip by norm with a non-finite norm poisons the step, as torch', () => {
  it('globalNorm, a NaN anywhere: every element of every param becomes NaN (AdamW)', () => {
    const { ps, opt } = setup('AdamW', { type: 'globalNorm', maxNorm: 1 }, nanAt);
    opt.step();
    for (const v of values(ps)) expect(v.every(Number.isNaN)).toBe(true);
  });

  it('globalNorm, an inf: finite grads become 0 and the inf one NaN (AdamW)', () => {
    const clipped = setup('AdamW', { type: 'globalNorm', maxNorm: 1 }, infAt);
    const zero = setup('AdamW', null, (grads) => {
      for (const g of grads) g.fill(0);
      grads[1][70000] = NaN;
    });
    clipped.opt.step();
    zero.opt.step();
    const [c, z] = [values(clipped.ps), values(zero.ps)];
    expect(c[1][70000]).toBeNaN();
    c[1][70000] = z[1][70000] = 0; // NaN payloads may differ
    c.forEach((v, t) => expect(Array.from(bitsOf(v))).toEqual(Array.from(bitsOf(z[t]))));
  });

  it('norm (per tensor): only the tensor with the NaN is poisoned; the others clip as before (Lion)', () => {
    const bad = setup('Lion', { type: 'norm', maxNorm: 0.5 }, nanAt);
    const good = setup('Lion', { type: 'norm', maxNorm: 0.5 }, () => {});
    bad.opt.step();
    good.opt.step();
    const [b, g] = [values(bad.ps), values(good.ps)];
    expect(Array.from(bitsOf(b[1]))).toEqual(Array.from(bitsOf(g[1])));
    // Every grad of tensor 0 is NaN: Lion leaves every element where the decay alone puts it.
    const decayOnly = setup('Lion', null, (grads) => grads[0].fill(0));
    decayOnly.opt.step();
    expect(Array.from(bitsOf(b[0]))).toEqual(Array.from(bitsOf(decayOnly.ps[0].data.toFloat32Array())));
    expect(bad.opt.stateDict().state[0].exp_avg.every(Number.isNaN)).toBe(true);
  });
});
