// TfjsOptimizer steps on tfjs models, on both tfjs backends installed here (the pure-JS CPU
// backend and wasm):
//  - against tfjs's own Adam. tf.train.adam is first shown to be, bit for bit, its formula
//    in float32 (an emulation below): m/(1 - acc1) / (sqrt(v/(1 - acc2)) + eps), with acc1,
//    acc2 running float32 products of beta1, beta2. eps is added where torch adds it (to
//    sqrt of the bias-corrected v; Keras's Python Adam adds it to sqrt(v) instead), and the
//    bias corrections are the same algebraically, but fused-optim computes them in float64
//    from the step count: 1 - fl32(0.999) is 1.3e-5 away from 1 - 0.999 relative, which
//    tfjs's float32 (1 - acc2) carries for hundreds of steps, so each of its updates is
//    6.5e-6 (half of that, through the square root) away from torch's in relative terms.
//    Fed the same grads, the two therefore differ by at most about lr * 6.5e-6 per step
//    plus float32 rounding; the bound used is lr * 2e-5 per step (3x) plus two float32 ulps
//    of the weight per step. Trained freely (each on its own model copy), the difference is
//    carried on by the grads; after 50 steps losses agree to 1e-4 relative and weights to
//    2e-5 (measured: 1.4e-5 and 3.6e-6). Control runs with another eps or beta2 fail both.
//  - AdamW with weight decay and no-decay groups, AdamWDL with layer names mapped to
//    encoder.layers.N, and Lion, against float64 references on the grads tfjs produced: odd
//    sizes (1, 3, 69000 > one 65536-element chunk), a variable without grad on some steps,
//    lr changed mid-run;
//  - gradient clipping passed through the builder.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, AdamWDL, Lion, noDecayParamGroups } from '../src/index';
import { TfjsOptimizer } from '../src/tfjs/index';
import { expectClose } from './support/compare';
import { randn, rng } from './support/random';
import { RefAdamW, RefLion } from './support/tfjs_reference';
import { BACKENDS, mlp, mseLoss, regressionData, snapshot, useBackend } from './support/tfjs_setup';

const f = Math.fround;

/** tf.train.adam's update of one element in float32, in tfjs-core 4.x's order of operations. */
class Float32TfjsAdam {
  readonly p: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  acc1: number;
  acc2: number;
  constructor(
    init: Float32Array,
    readonly lr: number,
    readonly b1: number,
    readonly b2: number,
    readonly eps: number,
  ) {
    this.p = Float32Array.from(init);
    this.m = new Float32Array(init.length);
    this.v = new Float32Array(init.length);
    this.acc1 = f(b1);
    this.acc2 = f(b2);
  }
  update(g: ArrayLike<number>): void {
    const { b1, b2 } = this;
    const c1 = f(1 - this.acc1);
    const c2 = f(1 - this.acc2);
    for (let i = 0; i < this.p.length; i++) {
      const m = f(f(this.m[i] * f(b1)) + f(g[i] * f(1 - b1)));
      const v = f(f(this.v[i] * f(b2)) + f(f(g[i] * g[i]) * f(1 - b2)));
      this.m[i] = m;
      this.v[i] = v;
      const step = f(f(m / c1) / f(f(Math.sqrt(f(v / c2))) + f(this.eps)));
      this.p[i] = f(f(step * f(-this.lr)) + this.p[i]);
    }
    this.acc1 = f(this.acc1 * f(b1));
    this.acc2 = f(this.acc2 * f(b2));
  }
}

function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, k) => (d = Math.max(d, Math.abs(v - b[i][k])))));
  return d;
}

function maxAbs(a: readonly Float32Array[]): number {
  let m = 0;
  for (const x of a) for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

for (const backend of BACKENDS) {
  describe(`TfjsOptimizer on the tfjs ${backend} backend`, () => {
    let tf: Awaited<ReturnType<typeof useBackend>>;
    beforeAll(async () => {
      tf = await useBackend(backend);
    });
    afterAll(() => tf.disposeVariables());

    it('tf.train.adam is its float32 formula bit for bit (the yardstick of what follows)', () => {
      const next = rng(3);
      const init = randn(1000, next);
      const v = tf.variable(tf.tensor(init), true, `${backend}_emulated`);
      const adam = tf.train.adam(1e-3, 0.9, 0.999, 1e-8);
      const emulated = new Float32TfjsAdam(init, 1e-3, 0.9, 0.999, 1e-8);
      for (let t = 1; t <= 50; t++) {
        // Every seventh step tiny grads, where eps matters.
        const g = randn(1000, next, t % 7 === 0 ? 1e-4 : 1);
        tf.tidy(() => adam.applyGradients([{ name: v.name, tensor: tf.tensor(g) }]));
        emulated.update(g);
        expect(Array.from(v.dataSync()), `step ${t}`).toEqual(Array.from(emulated.p));
      }
      adam.dispose();
      v.dispose();
    });

    describe('the same model trained by tf.train.adam and by TfjsOptimizer + AdamW (weightDecay 0)', () => {
      const spec = { inputs: 16, hidden: [32], outputs: 4 };
      const lr = 1e-2;
      const steps = 50;

      // Both optimizers get the grads of the fused side's model, step after step.
      function teacherForced(adamEps: number, adamBeta2: number): { diff: number; bound: number } {
        const a = mlp({ ...spec, prefix: `${backend}_tfA${adamEps}${adamBeta2}` }, 1);
        const b = mlp({ ...spec, prefix: `${backend}_tfB${adamEps}${adamBeta2}` }, 1);
        const { x, y } = regressionData(64, spec.inputs, spec.outputs, 2);
        const fused = new TfjsOptimizer(a, (ps) => new AdamW(ps, { lr, weightDecay: 0, eps: 1e-7 }));
        const adam = tf.train.adam(lr, 0.9, adamBeta2, adamEps);
        const va = a.trainableWeights.map((w) => w.read() as import('@tensorflow/tfjs').Variable);
        const vb = b.trainableWeights.map((w) => w.read() as import('@tensorflow/tfjs').Variable);
        let worst = 0;
        let bound = 0;
        for (let s = 1; s <= steps; s++) {
          const { value, grads } = tf.variableGrads(() => mseLoss(a, x, y), va);
          fused.applyGradients(va.map((v) => ({ name: v.name, tensor: grads[v.name] })));
          adam.applyGradients(vb.map((v, i) => ({ name: v.name, tensor: grads[va[i].name] })));
          tf.dispose([value, grads]);
          const wa = snapshot(va);
          bound += lr * 2e-5 + 2 * 2 ** -24 * maxAbs(wa);
          worst = Math.max(worst, maxAbsDiff(wa, snapshot(vb)) / bound);
        }
        tf.dispose([x, y]);
        adam.dispose();
        fused.dispose();
        a.dispose();
        b.dispose();
        return { diff: worst, bound };
      }

      it('fed the same grads for 50 steps, weights differ within lr * 2e-5 + 2 ulps per step', () => {
        const { diff } = teacherForced(1e-7, 0.999);
        expect(diff, 'worst difference / bound').toBeLessThanOrEqual(1);
        // The difference is there, as the analysis says: this is no identity check.
        expect(diff).toBeGreaterThan(0.05);
      });

      it('the bound is tight enough to catch another eps or beta2', () => {
        expect(teacherForced(1e-6, 0.999).diff).toBeGreaterThan(1);
        expect(teacherForced(1e-7, 0.998).diff).toBeGreaterThan(1);
      });

      async function fit(adamEps: number, adamBeta2: number) {
        const a = mlp({ ...spec, prefix: `${backend}_fitA${adamEps}${adamBeta2}` }, 1);
        const b = mlp({ ...spec, prefix: `${backend}_fitB${adamEps}${adamBeta2}` }, 1);
        const { x, y } = regressionData(64, spec.inputs, spec.outputs, 2);
        const fused = new TfjsOptimizer(a, (ps) => new AdamW(ps, { lr, weightDecay: 0, eps: 1e-7 }));
        const adam = tf.train.adam(lr, 0.9, adamBeta2, adamEps);
        a.compile({ optimizer: fused, loss: 'meanSquaredError' });
        b.compile({ optimizer: adam, loss: 'meanSquaredError' });
        const options = { epochs: steps, batchSize: 64, shuffle: false, verbose: 0 as const };
        const la = (await a.fit(x, y, options)).history.loss as number[];
        const lb = (await b.fit(x, y, options)).history.loss as number[];
        const lossDiff = Math.max(...la.map((l, i) => Math.abs(l - lb[i]) / lb[i]));
        const weightDiff = maxAbsDiff(snapshot(a), snapshot(b));
        tf.dispose([x, y]);
        adam.dispose();
        fused.dispose();
        a.dispose();
        b.dispose();
        return { la, lossDiff, weightDiff };
      }

      it('trained freely with model.fit for 50 steps, losses agree to 1e-4 relative and weights to 2e-5', async () => {
        const { la, lossDiff, weightDiff } = await fit(1e-7, 0.999);
        expect(la[steps - 1]).toBeLessThan(la[0] / 5); // it did train
        expect(lossDiff).toBeLessThan(1e-4);
        expect(weightDiff).toBeLessThan(2e-5);
      });

      it('the free-running tolerances catch another eps or beta2 too', async () => {
        for (const [eps, beta2] of [
          [1e-6, 0.999],
          [1e-7, 0.998],
        ]) {
          const { lossDiff, weightDiff } = await fit(eps, beta2);
          expect(lossDiff >= 1e-4 || weightDiff >= 2e-5, `eps ${eps} beta2 ${beta2}`).toBe(true);
        }
      });
    });

    describe('against float64 references on the grads tfjs produced', () => {
      // Sizes 69000 (kernel 230 x 300: more than one 65536-element chunk), 300, 900, 3, 3, 1.
      const spec = { inputs: 230, hidden: [300, 3], outputs: 1 };
      const steps = 9;
      const noGradSteps = new Set([3, 7]); // the first layer's bias gets no grad then
      const lrChangeStep = 5; // from this step on, group 0's lr is tripled

      type Ref = { update(g: ArrayLike<number>, step: number): void; p: Float64Array };

      function run(
        prefix: string,
        makeOpt: (model: import('@tensorflow/tfjs').Sequential) => TfjsOptimizer,
        makeRef: (opt: TfjsOptimizer, index: number, init: Float32Array) => Ref,
        tolerance: { rtol: number; atol: number },
      ): TfjsOptimizer {
        const model = mlp({ ...spec, prefix: `${backend}_${prefix}` }, 5);
        const { x, y } = regressionData(16, spec.inputs, spec.outputs, 6);
        const opt = makeOpt(model);
        const vars = opt.variables as import('@tensorflow/tfjs').Variable[];
        expect(vars.map((v) => v.size)).toEqual([69000, 300, 900, 3, 3, 1]);
        const refs = snapshot(vars).map((init, i) => makeRef(opt, i, init));
        for (let s = 1; s <= steps; s++) {
          if (s === lrChangeStep) opt.fused.paramGroups[0].lr *= 3;
          const { value, grads } = tf.variableGrads(() => mseLoss(model, x, y), vars);
          const given = vars.map((v, i) => ({
            name: v.name,
            tensor: i === 1 && noGradSteps.has(s) ? undefined : grads[v.name],
          }));
          const gradValues = given.map((g) => (g.tensor ? Float32Array.from(g.tensor.dataSync()) : null));
          opt.applyGradients(given as Array<{ name: string; tensor: import('@tensorflow/tfjs').Tensor }>);
          tf.dispose([value, grads]);
          refs.forEach((r, i) => gradValues[i] && r.update(gradValues[i]!, s));
          snapshot(vars).forEach((w, i) =>
            expectClose(w, refs[i].p, `${prefix} step ${s} '${vars[i].name}'`, tolerance),
          );
        }
        tf.dispose([x, y]);
        return opt;
      }

      const groupOf = (opt: TfjsOptimizer, p: unknown) =>
        opt.fused.paramGroups.find((g) => g.params.includes(p as never))!;

      it('AdamW with weight decay and no-decay groups (biases), lr changed mid-run, a grad missing on some steps', () => {
        const opt = run(
          'adamw',
          (model) =>
            new TfjsOptimizer(model, (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.1 }), { lr: 2e-3 })),
          (opt, i, init) => {
            const ref = new RefAdamW(init);
            const p = opt.params[i];
            return {
              p: ref.p,
              update: (g) => {
                const h = groupOf(opt, p) as unknown as {
                  lr: number;
                  betas: [number, number];
                  eps: number;
                  weightDecay: number;
                };
                ref.update(g, h);
              },
            };
          },
          { rtol: 2e-6, atol: 2e-7 },
        );
        expect(opt.fused.paramGroups.map((g) => g.weightDecay)).toEqual([0.1, 0]);
        expect(opt.fused.paramGroups[1].params.map((p) => p.name)).toEqual([
          `${backend}_adamw_dense0/bias`,
          `${backend}_adamw_dense1/bias`,
          `${backend}_adamw_out/bias`,
        ]);
        opt.dispose();
      });

      it('AdamWDL with tfjs names mapped to encoder.layers.N (paramName), its ratios on the Adam step', () => {
        const toEncoder = (name: string) => name.replace(/^\w+?_dense(\d+)\//, 'encoder.layers.$1.');
        const opt = run(
          'adamwdl',
          (model) =>
            new TfjsOptimizer(
              model,
              (ps) =>
                new AdamWDL(noDecayParamGroups(ps, { weightDecay: 0.05 }), {
                  lr: 2e-3,
                  layerwiseDecay: 0.5,
                  nLayers: 2,
                }),
              { paramName: toEncoder },
            ),
          (opt, i, init) => {
            const ref = new RefAdamW(init);
            const p = opt.params[i];
            // The seed's rule, written out: decay^(nLayers - N) in encoder layer N, 1 elsewhere.
            const layer = /^encoder\.layers\.(\d+)\./.exec(p.name);
            const ratio = layer ? 0.5 ** (2 - Number(layer[1])) : 1;
            return {
              p: ref.p,
              update: (g) => {
                const h = groupOf(opt, p) as unknown as {
                  lr: number;
                  betas: [number, number];
                  eps: number;
                  weightDecay: number;
                };
                ref.update(g, h, { ratio });
              },
            };
          },
          { rtol: 2e-6, atol: 2e-7 },
        );
        expect(opt.params.map((p) => p.name)).toEqual([
          'encoder.layers.0.kernel',
          'encoder.layers.0.bias',
          'encoder.layers.1.kernel',
          'encoder.layers.1.bias',
          `${backend}_adamwdl_out/kernel`,
          `${backend}_adamwdl_out/bias`,
        ]);
        expect([...(opt.fused as unknown as AdamWDL).ratios.values()].map((r) => r.ratio)).toEqual([
          0.25, 0.5, 1, 0.25, 0.5, 1,
        ]);
        opt.dispose();
      });

      it('Lion with decoupled weight decay scaled by lr / initial_lr', () => {
        const opt = run(
          'lion',
          (model) => new TfjsOptimizer(model, (ps) => new Lion(ps, { lr: 1e-3, weightDecay: 5e-4 })),
          (opt, i, init) => {
            const ref = new RefLion(init);
            const p = opt.params[i];
            return {
              p: ref.p,
              update: (g) => {
                const h = groupOf(opt, p) as unknown as {
                  lr: number;
                  betas: [number, number];
                  weightDecay: number;
                  initialLr: number;
                };
                ref.update(g, h);
              },
            };
          },
          { rtol: 2e-6, atol: 1e-7 },
        );
        opt.dispose();
      });
    });

    it('gradClip from the builder clips the tfjs grads by their global norm', () => {
      const model = mlp({ inputs: 7, hidden: [5], outputs: 2, prefix: `${backend}_clip` }, 8);
      const { x, y } = regressionData(8, 7, 2, 9);
      const maxNorm = 0.05;
      // A large eps: Adam's update then depends on the grads' scale, so clipping shows.
      const hyper = { lr: 1e-2, betas: [0.9, 0.999] as [number, number], eps: 1e-2, weightDecay: 0 };
      const opt = new TfjsOptimizer(
        model,
        (ps) => new AdamW(ps, { ...hyper, gradClip: { type: 'globalNorm', maxNorm } }),
      );
      const vars = opt.variables as import('@tensorflow/tfjs').Variable[];
      const refs = snapshot(vars).map((init) => new RefAdamW(init));
      const unclipped = snapshot(vars).map((init) => new RefAdamW(init));
      for (let s = 0; s < 4; s++) {
        const { value, grads } = tf.variableGrads(() => mseLoss(model, x, y), vars);
        const g = vars.map((v) => Float32Array.from(grads[v.name].dataSync()));
        opt.applyGradients(grads);
        tf.dispose([value, grads]);
        const norm = Math.sqrt(g.reduce((a, gi) => a + gi.reduce((b, e) => b + e * e, 0), 0));
        expect(norm).toBeGreaterThan(maxNorm); // the clipping is active
        const scale = Math.min(1, maxNorm / norm);
        refs.forEach((r, i) =>
          r.update(
            g[i].map((e) => e * scale),
            hyper,
          ),
        );
        unclipped.forEach((r, i) => r.update(g[i], hyper));
      }
      const tolerance = { rtol: 2e-6, atol: 1e-6 };
      snapshot(vars).forEach((w, i) => expectClose(w, refs[i].p, `clipped '${vars[i].name}'`, tolerance));
      expect(() => snapshot(vars).forEach((w, i) => expectClose(w, unclipped[i].p, 'unclipped', tolerance))).toThrow();
      tf.dispose([x, y]);
      opt.dispose();
    });
  });
}
