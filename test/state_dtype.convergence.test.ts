// Convergence with low-bit optimizer state: the demo's regression task (y = sin(x.u) +
// 0.5 (x.v)^2 - 0.5 from 16 inputs), a 16 -> 256 -> 1 tanh MLP trained in TypeScript, whose
// 4096-element first layer gets 8-bit state (the smaller tensors keep fp32 state, the
// 4096-element rule). Over several seeds, bf16 and 8-bit state must end within MARGIN of
// the fp32-state run's test loss (see the comment at MARGIN for how it was chosen).
import { describe, expect, it } from 'vitest';
import { AdamW, Lion, Parameter, Tensor } from '../src/index';
import { randn, rng } from './support/random';

const IN = 16;
const HIDDEN = 256;
const N_TRAIN = 2048;
const N_TEST = 512;
const BATCH = 64;
const STEPS = 240;
const SEEDS = [1, 2, 3];
// The margin, from a run of this suite (CPU, 2026-12-02): the fp32-state runs ended at test
// losses of 0.10-0.16 (AdamW) and 0.12-0.21 (Lion), and bf16 and 8-bit state ended within
// 2.2% of them for every seed (largest: AdamW, 8-bit, seed 3, -2.2%; the test prints every
// gap). 10% is four to five times the largest gap, so seed-to-seed noise does not fail it,
// while a low-bit state that trains clearly worse does: an undertrained model (the loss
// after a tenth of the steps, checked to be over 3x the final one) is far outside it.
const MARGIN = 0.1;

function makeData(seed: number, n: number) {
  const next = rng(seed);
  const u = randn(IN, next, 1 / Math.sqrt(IN));
  const v = randn(IN, next, 1 / Math.sqrt(IN));
  const x = randn(n * IN, next);
  const y = new Float32Array(n);
  for (let s = 0; s < n; s++) {
    let a = 0;
    let b = 0;
    for (let k = 0; k < IN; k++) {
      a += x[s * IN + k] * u[k];
      b += x[s * IN + k] * v[k];
    }
    y[s] = Math.sin(a) + 0.5 * b * b - 0.5;
  }
  return { x, y };
}

function train(optimizer: 'adamw' | 'lion', stateDtype: 'float32' | 'bfloat16' | 'uint8', seed: number) {
  const data = makeData(100 + seed, N_TRAIN + N_TEST);
  const next = rng(seed);
  const shapes = [HIDDEN * IN, HIDDEN, HIDDEN, 1];
  const fanIn = [IN, IN, HIDDEN, HIDDEN];
  const params = shapes.map((n, i) => {
    const p = new Parameter(Tensor.from(randn(n, next, 1 / Math.sqrt(fanIn[i]))), { name: `p${i}` });
    p.grad = Tensor.zeros([n]);
    return p;
  });
  const opt =
    optimizer === 'adamw'
      ? new AdamW(params, { lr: 3e-3, weightDecay: 1e-2, stateDtype })
      : new Lion(params, { lr: 1e-3, weightDecay: 1e-4, stateDtype });
  const grads = shapes.map((n) => new Float32Array(n));
  const h = new Float32Array(HIDDEN);
  const batchNext = rng(1000 + seed);
  const loss = (rows: number[], withGrad: boolean) => {
    const [W1, B1, W2, B2] = params.map((p) => p.data.toFloat32Array());
    if (withGrad) grads.forEach((g) => g.fill(0));
    let total = 0;
    for (const s of rows) {
      let out = B2[0];
      for (let j = 0; j < HIDDEN; j++) {
        let z = B1[j];
        for (let k = 0; k < IN; k++) z += W1[j * IN + k] * data.x[s * IN + k];
        h[j] = Math.tanh(z);
        out += W2[j] * h[j];
      }
      const err = out - data.y[s];
      total += err * err;
      if (!withGrad) continue;
      const d = (2 * err) / rows.length;
      grads[3][0] += d;
      for (let j = 0; j < HIDDEN; j++) {
        grads[2][j] += d * h[j];
        const dz = d * W2[j] * (1 - h[j] * h[j]);
        grads[1][j] += dz;
        for (let k = 0; k < IN; k++) grads[0][j * IN + k] += dz * data.x[s * IN + k];
      }
    }
    if (withGrad) params.forEach((p, i) => p.grad!.copyFrom(grads[i]));
    return total / rows.length;
  };
  const test = Array.from({ length: N_TEST }, (_, i) => N_TRAIN + i);
  let early = 0;
  for (let step = 0; step < STEPS; step++) {
    loss(
      Array.from({ length: BATCH }, () => Math.floor(batchNext() * N_TRAIN)),
      true,
    );
    opt.step();
    if (step === STEPS / 10) early = loss(test, false);
  }
  const result = { final: loss(test, false), early, stateBytes: opt.stateBytes() };
  opt.dispose();
  return result;
}

describe('low-bit optimizer state converges like fp32 state', () => {
  for (const optimizer of ['adamw', 'lion'] as const) {
    it(`${optimizer}: bf16 and 8-bit state end within ${MARGIN * 100}% of fp32 state's test loss (seeds ${SEEDS})`, () => {
      const report: string[] = [];
      for (const seed of SEEDS) {
        const fp32 = train(optimizer, 'float32', seed);
        // The task is learnt: the test loss falls well below its early value.
        expect(fp32.final, `seed ${seed} fp32`).toBeLessThan(fp32.early / 3);
        for (const stateDtype of ['bfloat16', 'uint8'] as const) {
          const low = train(optimizer, stateDtype, seed);
          const gap = (low.final - fp32.final) / fp32.final;
          report.push(
            `seed ${seed} ${stateDtype}: ${low.final.toFixed(5)} vs ${fp32.final.toFixed(5)} (${(100 * gap).toFixed(1)}%)`,
          );
          expect(low.stateBytes, `${stateDtype} holds less state`).toBeLessThan(fp32.stateBytes);
          expect(Math.abs(gap), report.join('; ')).toBeLessThanOrEqual(MARGIN);
        }
      }
      console.log(`${optimizer}: ${report.join('; ')}`);
    }, 120_000);
  }
});
