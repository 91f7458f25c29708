import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { AdamW } from 'fused-optim';
import { TfjsOptimizer } from 'fused-optim/tfjs';
tf.enableProdMode();
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randn(n, next, s = 1) {
  const o = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(next(), 1e-12);
    o[i] = s * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  }
  return o;
}
for (const b of ['cpu', 'wasm']) {
  await tf.setBackend(b);
  await tf.ready();
  const make = (p) => {
    const m = tf.sequential({
      layers: [
        tf.layers.dense({ units: 32, inputShape: [16], activation: 'tanh', name: p + 'a' }),
        tf.layers.dense({ units: 4, name: p + 'b' }),
      ],
    });
    const r = rng(1);
    m.setWeights(
      m.weights.map((w) =>
        tf.tensor(
          randn(
            w.shape.reduce((a, b) => a * b, 1),
            r,
            0.5,
          ),
          w.shape,
        ),
      ),
    );
    return m;
  };
  const A = make(b + 'A'),
    B = make(b + 'B');
  const r = rng(2);
  const x = tf.tensor(randn(64 * 16, r), [64, 16]);
  const y = tf.tensor(randn(64 * 4, r), [64, 4]);
  const lr = 1e-2;
  const fo = new TfjsOptimizer(A, (ps) => new AdamW(ps, { lr, weightDecay: 0, eps: 1e-7 }));
  const ad = tf.train.adam(lr, 0.9, 0.999, 1e-7);
  const va = A.trainableWeights.map((w) => w.read()),
    vb = B.trainableWeights.map((w) => w.read());
  // teacher-forced: grads from A applied to both
  let maxd = 0;
  for (let s = 0; s < 50; s++) {
    const { grads, value } = tf.variableGrads(() => tf.losses.meanSquaredError(y, A.apply(x)), va);
    fo.applyGradients(va.map((v) => ({ name: v.name, tensor: grads[v.name] })));
    ad.applyGradients(vb.map((v, i) => ({ name: v.name, tensor: grads[va[i].name] })));
    tf.dispose(grads);
    value.dispose();
    for (let i = 0; i < va.length; i++) {
      const a = va[i].dataSync(),
        c = vb[i].dataSync();
      for (let k = 0; k < a.length; k++) maxd = Math.max(maxd, Math.abs(a[k] - c[k]));
    }
    if (s === 0 || s === 9 || s === 49)
      console.log(
        b,
        'teacher-forced step',
        s + 1,
        'max|dw|',
        maxd.toExponential(2),
        'in units of lr*steps',
        (maxd / lr / (s + 1)).toExponential(2),
      );
  }
}
// free-running + emulation of tfjs adam formula in fp32
for (const b of ['cpu', 'wasm']) {
  await tf.setBackend(b);
  await tf.ready();
  const make = (p) => {
    const m = tf.sequential({
      layers: [
        tf.layers.dense({ units: 32, inputShape: [16], activation: 'tanh', name: p + 'a' }),
        tf.layers.dense({ units: 4, name: p + 'b' }),
      ],
    });
    const r = rng(1);
    m.setWeights(
      m.weights.map((w) =>
        tf.tensor(
          randn(
            w.shape.reduce((a, b) => a * b, 1),
            r,
            0.5,
          ),
          w.shape,
        ),
      ),
    );
    return m;
  };
  const A = make(b + 'fA'),
    B = make(b + 'fB');
  const r = rng(2);
  const x = tf.tensor(randn(64 * 16, r), [64, 16]);
  const y = tf.tensor(randn(64 * 4, r), [64, 4]);
  const lr = 1e-2;
  const fo = new TfjsOptimizer(A, (ps) => new AdamW(ps, { lr, weightDecay: 0, eps: 1e-7 }));
  const ad = tf.train.adam(lr, 0.9, 0.999, 1e-7);
  A.compile({ optimizer: fo, loss: 'meanSquaredError' });
  B.compile({ optimizer: ad, loss: 'meanSquaredError' });
  const ha = await A.fit(x, y, { epochs: 50, batchSize: 64, shuffle: false, verbose: 0 });
  const hb = await B.fit(x, y, { epochs: 50, batchSize: 64, shuffle: false, verbose: 0 });
  let maxl = 0;
  ha.history.loss.forEach((l, i) => (maxl = Math.max(maxl, Math.abs(l - hb.history.loss[i]) / hb.history.loss[i])));
  let maxd = 0;
  A.weights.forEach((w, i) => {
    const a = w.read().dataSync(),
      c = B.weights[i].read().dataSync();
    for (let k = 0; k < a.length; k++) maxd = Math.max(maxd, Math.abs(a[k] - c[k]));
  });
  console.log(
    b,
    'free-running 50 steps: loss',
    ha.history.loss[0].toFixed(4),
    '->',
    ha.history.loss[49].toFixed(4),
    'max rel dloss',
    maxl.toExponential(2),
    'max |dw|',
    maxd.toExponential(2),
  );
}
