// Float64 references for the TensorFlow.js adapter's tests, run on the grads tfjs produced:
// AdamW with AdamWDL's per-param modifiers (its documented rule: the decoupled decay uses the
// group's base lr, the Adam step lr * ratio; plain AdamW is ratio 1 with decay on), and
// DecoupledLionW. Same formulas as test/support/adamw_reference.ts and metrics_reference.ts,
// carried over many steps (each param keeps its moments and step count).
import type { LayerwiseMods } from './metrics_reference';

export interface AdamWGroupHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export class RefAdamW {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  step = 0;

  constructor(init: ArrayLike<number>) {
    this.p = Float64Array.from(init);
    this.m = new Float64Array(init.length);
    this.v = new Float64Array(init.length);
  }

  update(grad: ArrayLike<number>, h: AdamWGroupHyper, mods: LayerwiseMods = {}): void {
    this.step += 1;
    const [b1, b2] = h.betas;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    const decay = mods.applyDecay === false ? 1 : 1 - h.lr * h.weightDecay;
    const stepSize = (h.lr * (mods.ratio ?? 1)) / bc1;
    for (let i = 0; i < this.p.length; i++) {
      const g = grad[i];
      this.m[i] = b1 * this.m[i] + (1 - b1) * g;
      this.v[i] = b2 * this.v[i] + (1 - b2) * g * g;
      this.p[i] = this.p[i] * decay - (stepSize * this.m[i]) / (Math.sqrt(this.v[i]) / Math.sqrt(bc2) + h.eps);
    }
  }
}

export interface LionGroupHyper {
  lr: number;
  betas: [number, number];
  weightDecay: number;
  /** DecoupledLionW scales the decay by lr / initialLr. */
  initialLr: number;
}

export class RefLion {
  p: Float64Array;
  m: Float64Array;

  constructor(init: ArrayLike<number>) {
    this.p = Float64Array.from(init);
    this.m = new Float64Array(init.length);
  }

  update(grad: ArrayLike<number>, h: LionGroupHyper): void {
    const [b1, b2] = h.betas;
    const decay = h.weightDecay !== 0 ? 1 - (h.lr / h.initialLr) * h.weightDecay : 1;
    for (let i = 0; i < this.p.length; i++) {
      const g = grad[i];
      const c = this.m[i] + (1 - b1) * (g - this.m[i]);
      this.p[i] = this.p[i] * decay - h.lr * Math.sign(c);
      this.m[i] = this.m[i] + (1 - b2) * (g - this.m[i]);
    }
  }
}
