// How TfjsOptimizer moves values in and out of tfjs, on both backends: no tensor leaks over
// 1,000 steps, the copy-free reads each backend allows, tfjs's rule that a tensor's values
// never change (what a user read before a step keeps its values), the wasm backend's matmul
// seeing the new weights (it caches packed weights per tensor), variables assigned outside
// the optimizer, and a backend switch in the middle of training.
import type * as tfTypes from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, Lion, backendInfo } from '../src/index';
import { TfjsOptimizer } from '../src/tfjs/index';
import { BACKENDS, mlp, mseLoss, regressionData, snapshot, useBackend } from './support/tfjs_setup';

let tf: typeof tfTypes;
afterAll(() => tf?.disposeVariables());

for (const backend of BACKENDS) {
  describe(`TfjsOptimizer transfers on the tfjs ${backend} backend`, () => {
    beforeAll(async () => {
      tf = await useBackend(backend);
    });

    it('1,000 steps (minimize and applyGradients, a variable without grad on odd steps) leak no tensor', () => {
      const model = mlp({ inputs: 4, hidden: [6], outputs: 1, prefix: `${backend}_leak` }, 1);
      const { x, y } = regressionData(8, 4, 1, 2);
      const opt = new TfjsOptimizer(model, (ps) => new AdamW(ps, { lr: 1e-3 }));
      const vars = opt.variables as tfTypes.Variable[];
      const gradBuffers = () => opt.params.map((p) => p.grad);
      opt.minimize(() => mseLoss(model, x, y));
      const buffers = gradBuffers();
      const memory = tf.memory();
      for (let s = 1; s < 1000; s++) {
        if (s % 2) {
          const { value, grads } = tf.variableGrads(() => mseLoss(model, x, y), vars.slice(1));
          opt.applyGradients(grads);
          tf.dispose([value, grads]);
        } else {
          opt.minimize(() => mseLoss(model, x, y));
        }
      }
      expect(opt.step).toBe(1000);
      expect(tf.memory().numTensors).toBe(memory.numTensors);
      expect(tf.memory().numBytes).toBe(memory.numBytes);
      // The fused grad buffers are made once and reused.
      expect(gradBuffers().slice(1)).toEqual(buffers.slice(1));
      expect(opt.params[0].grad).toBe(null); // no grad in the last step (odd)
      opt.minimize(() => mseLoss(model, x, y));
      expect(gradBuffers()).toEqual(buffers);
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
    });

    it(`reads grads ${backend === 'wasm' ? 'through wasm heap views' : 'with dataSync (the CPU backend’s own arrays)'} and writes new tensors`, () => {
      const v = tf.variable(tf.ones([5]), true, `${backend}_counted`);
      const opt = new TfjsOptimizer([v], (ps) => new Lion(ps, { lr: 0.25 }));
      const counts = { ...opt.transfers };
      const g = tf.fill([5], -1);
      opt.applyGradients({ [v.name]: g });
      const reads = backend === 'wasm' ? 'readsHeapView' : 'readsDataSync';
      const writes = backend === 'wasm' ? 'writesHeapView' : 'writesArray';
      expect(opt.transfers[reads] - counts[reads]).toBe(1);
      expect(opt.transfers[writes] - counts[writes]).toBe(1);
      expect(opt.transfers.readsHeapView + opt.transfers.readsDataSync).toBe(
        counts.readsHeapView + counts.readsDataSync + 1,
      );
      expect(Array.from(v.dataSync())).toEqual([1.25, 1.25, 1.25, 1.25, 1.25]);
      tf.dispose(g);
      opt.dispose();
      v.dispose();
    });

    it('what was read from a variable before a step keeps its values (dataSync arrays, slices, reshapes, clones)', () => {
      const v = tf.variable(tf.tensor([1, 2, 3, 4, 5, 6]), true, `${backend}_immutable`);
      const opt = new TfjsOptimizer([v], (ps) => new Lion(ps, { lr: 0.5 }));
      const read = v.dataSync(); // the CPU backend's own array
      const slice = tf.slice(v, [1], [3]); // a subarray of it on the CPU backend
      const reshaped = tf.reshape(v, [2, 3]); // shares the variable's data
      const clone = tf.clone(v);
      const g = tf.ones([6]);
      opt.applyGradients({ [v.name]: g });
      expect(Array.from(v.dataSync())).toEqual([0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
      expect(Array.from(read)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(slice.dataSync())).toEqual([2, 3, 4]);
      expect(Array.from(reshaped.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(clone.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
      tf.dispose([slice, reshaped, clone, g]);
      opt.dispose();
      v.dispose();
    });

    it("the model's next forward pass uses the new weights (wasm's matmul caches the weights it packed)", () => {
      const model = mlp({ inputs: 8, hidden: [16], outputs: 3, prefix: `${backend}_fresh` }, 3);
      const { x, y } = regressionData(4, 8, 3, 4);
      const opt = new TfjsOptimizer(model, (ps) => new AdamW(ps, { lr: 0.1 }));
      model.predict(x); // the packed weights are made here
      opt.minimize(() => mseLoss(model, x, y));
      const predicted = tf.tidy(() => Array.from((model.predict(x) as tfTypes.Tensor).dataSync()));
      // The same forward pass in plain JavaScript from the variables' values.
      const [k0, b0, k1, b1] = snapshot(model);
      const xs = x.dataSync();
      const expected: number[] = [];
      for (let r = 0; r < 4; r++) {
        const h = Array.from({ length: 16 }, (_, j) => {
          let s = b0[j];
          for (let i = 0; i < 8; i++) s += xs[r * 8 + i] * k0[i * 16 + j];
          return Math.tanh(s);
        });
        for (let o = 0; o < 3; o++) {
          let s = b1[o];
          for (let j = 0; j < 16; j++) s += h[j] * k1[j * 3 + o];
          expected.push(s);
        }
      }
      predicted.forEach((p, i) => expect(p).toBeCloseTo(expected[i], 5));
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
    });

    it('a variable assigned outside the optimizer (model.setWeights) is read again before its next step', () => {
      const v = tf.variable(tf.zeros([3]), true, `${backend}_assigned`);
      const opt = new TfjsOptimizer([v], (ps) => new Lion(ps, { lr: 0.5 }));
      const g = tf.ones([3]);
      opt.applyGradients({ [v.name]: g });
      v.assign(tf.tensor([10, 20, 30]));
      opt.applyGradients({ [v.name]: g });
      expect(Array.from(v.dataSync())).toEqual([9.5, 19.5, 29.5]);
      expect(Array.from(opt.params[0].data.toFloat32Array())).toEqual([9.5, 19.5, 29.5]);
      tf.dispose(g);
      opt.dispose();
      v.dispose();
    });
  });
}

describe('a backend switch in the middle of training', () => {
  it('variables made on one backend train on under the other, with the same results as one backend throughout', async () => {
    const results: Float32Array[][] = [];
    for (const switchAt of [Infinity, 3]) {
      tf = await useBackend('cpu');
      const model = mlp({ inputs: 5, hidden: [7], outputs: 2, prefix: `switch${switchAt}` }, 5);
      const { x, y } = regressionData(8, 5, 2, 6);
      const opt = new TfjsOptimizer(model, (ps) => new Lion(ps, { lr: 1e-2 }));
      for (let s = 0; s < 6; s++) {
        if (s === switchAt) await useBackend('wasm');
        opt.minimize(() => mseLoss(model, x, y));
      }
      results.push(snapshot(model));
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
    }
    // Lion's update is lr * sign(.): both runs agree unless a sign flips (it does not here).
    results[1].forEach((w, i) => w.forEach((e, k) => expect(e).toBeCloseTo(results[0][i][k], 5)));
  });
});

const cuda = backendInfo().computeCapability !== undefined;
describe.skipIf(!cuda)('fused tensors on the GPU (device: cuda)', () => {
  it('give the same bits as on the CPU (grads in and values out through the host)', async () => {
    tf = await useBackend('cpu');
    const results: Float32Array[][] = [];
    for (const device of ['cpu', 'cuda'] as const) {
      const model = mlp({ inputs: 300, hidden: [230], outputs: 3, prefix: `device_${device}` }, 7);
      const { x, y } = regressionData(8, 300, 3, 8);
      const opt = new TfjsOptimizer(model, (ps) => new AdamW(ps, { lr: 1e-3 }), { device });
      expect(opt.params[0].data.device).toBe(device);
      for (let s = 0; s < 5; s++) opt.minimize(() => mseLoss(model, x, y));
      results.push(snapshot(model));
      tf.dispose([x, y]);
      opt.dispose();
      model.dispose();
    }
    // Both backends evaluate the update in the same IEEE order (docs/design.md section 5).
    results[1].forEach((w, i) => expect(Array.from(w), `weight ${i}`).toEqual(Array.from(results[0][i])));
  });
});
