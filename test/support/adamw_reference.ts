// AdamW in float64, straight from torch's documented algorithm (docs/api.md, AdamW):
// the yardstick the fp32 kernels are held to.
export interface RefHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

export class RefAdamWParam {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  vmax: Float64Array;
  step = 0;

  constructor(init: ArrayLike<number>) {
    this.p = Float64Array.from(init);
    this.m = new Float64Array(init.length);
    this.v = new Float64Array(init.length);
    this.vmax = new Float64Array(init.length);
  }

  update(grad: ArrayLike<number> | null, h: RefHyper): void {
    if (grad === null) return; // torch skips params without grad entirely
    this.step += 1;
    const [b1, b2] = h.betas;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    for (let i = 0; i < this.p.length; i++) {
      const g = h.maximize ? -grad[i] : grad[i];
      this.p[i] *= 1 - h.lr * h.weightDecay;
      this.m[i] = b1 * this.m[i] + (1 - b1) * g;
      this.v[i] = b2 * this.v[i] + (1 - b2) * g * g;
      let second = this.v[i];
      if (h.amsgrad) {
        this.vmax[i] = Math.max(this.vmax[i], this.v[i]);
        second = this.vmax[i];
      }
      const denom = Math.sqrt(second) / Math.sqrt(bc2) + h.eps;
      this.p[i] -= (h.lr / bc1) * (this.m[i] / denom);
    }
  }
}
