// The peers the fused optimizers are compared with, in the same run and on the same machine:
//  - "js": a straightforward JavaScript implementation over Float32Arrays, one thread, the
//    same math as the fused loops (AdamW as torch's _single_tensor_adamw; AdamWDL the same
//    with the layer-wise lr ratio on the Adam step; Lion as DecoupledLionW), fp32 only;
//  - "tfjs": @tensorflow/tfjs's tf.train.adam on its pure-JavaScript CPU backend, fp32.
//    It is Adam, not AdamW: no decoupled weight decay (one multiply per element less than
//    AdamW), compared with the fused AdamW. Optional: skipped when the package is absent.
import { median, nowMs } from './stats.mjs';

const LR = 1e-3;
const BETAS = [0.9, 0.999];
const EPS = 1e-8;
const WD = 0.01;

function fill(a, seed) {
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return a;
}

// AdamWDL's default rule (src/layerwise.ts): encoder.layers.N -> decay^(nLayers - N),
// embedding -> decay^(nLayers + 1), else 1.
export function defaultRatio(decay, name, nLayers) {
  const m = /encoder\.layers\.(\d+)/.exec(name);
  if (m) return decay ** (nLayers - Number(m[1]));
  if (name.includes('embedding')) return decay ** (nLayers + 1);
  return 1;
}

function adamwTensor(p, g, m, v, decay, stepSize, bc2Sqrt) {
  const b1 = BETAS[0];
  const b2 = BETAS[1];
  const ob1 = 1 - b1;
  const ob2 = 1 - b2;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = b1 * m[i] + ob1 * gi;
    const vi = b2 * v[i] + ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + EPS);
  }
}

function lionTensor(p, g, m, decay, lr) {
  const b1 = 0.9;
  const b2 = 0.99;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = m[i];
    const c = mi + (1 - b1) * (gi - mi);
    p[i] = p[i] * decay - lr * Math.sign(c);
    m[i] = mi + (1 - b2) * (gi - mi);
  }
}

/** A plain-JavaScript optimizer over `tensors` ([{ name, numel }]): { step(), dispose() }. */
export function createJsPeer(algo, tensors) {
  const p = tensors.map((t, i) => fill(new Float32Array(t.numel), 1 + i));
  const g = tensors.map((t, i) => fill(new Float32Array(t.numel), 7919 + i));
  const m = tensors.map((t) => new Float32Array(t.numel));
  const v = algo === 'lion' ? [] : tensors.map((t) => new Float32Array(t.numel));
  const ratios = tensors.map((t) => (algo === 'adamwdl' ? defaultRatio(0.9, t.name, 12) : 1));
  let step = 0;
  return {
    step() {
      step++;
      if (algo === 'lion') {
        for (let i = 0; i < p.length; i++) lionTensor(p[i], g[i], m[i], 1 - 1e-5, 1e-4);
        return;
      }
      const bc1 = 1 - BETAS[0] ** step;
      const bc2Sqrt = Math.sqrt(1 - BETAS[1] ** step);
      for (let i = 0; i < p.length; i++)
        adamwTensor(p[i], g[i], m[i], v[i], 1 - LR * WD, (LR * ratios[i]) / bc1, bc2Sqrt);
    },
    dispose() {},
  };
}

let tfPromise;
/** @tensorflow/tfjs on its CPU backend, in production mode (no per-op NaN checks, no banner); null when absent. */
export function loadTfjs() {
  tfPromise ??= (async () => {
    try {
      const tf = await import('@tensorflow/tfjs');
      tf.enableProdMode();
      await tf.setBackend('cpu');
      await tf.ready();
      return tf;
    } catch (e) {
      return { unavailable: e.message };
    }
  })();
  return tfPromise;
}

/** tf.train.adam over `tensors` with constant gradients: { step(), dispose() }. */
export function createTfjsPeer(tf, tensors) {
  const vars = tensors.map((t, i) => tf.variable(tf.tensor1d(fill(new Float32Array(t.numel), 1 + i)), true, `p${i}`));
  const grads = tensors.map((t, i) => tf.tensor1d(fill(new Float32Array(t.numel), 7919 + i)));
  const named = {};
  vars.forEach((v, i) => (named[v.name] = grads[i]));
  const opt = tf.train.adam(LR, BETAS[0], BETAS[1], EPS);
  return {
    // The CPU backend computes each op synchronously when it is called.
    step() {
      opt.applyGradients(named);
    },
    dispose() {
      opt.dispose();
      vars.forEach((v) => v.dispose());
      grads.forEach((g) => g.dispose());
    },
  };
}

/** Times peer.step(): warm-up, then at least minReps steps and about targetMs in all. */
export function timePeer(peer, { warmup, minReps, maxReps, targetMs }) {
  for (let i = 0; i < warmup; i++) peer.step();
  const samples = [];
  let t0 = nowMs();
  peer.step();
  samples.push(nowMs() - t0);
  const reps = Math.max(minReps, Math.min(maxReps, Math.ceil(targetMs / samples[0])));
  while (samples.length < reps) {
    t0 = nowMs();
    peer.step();
    samples.push(nowMs() - t0);
  }
  return { msMedian: median(samples), msMin: Math.min(...samples), reps: samples.length };
}
