#!/usr/bin/env node
// A short stepping script for compute-sanitizer (scripts/gpu-check.sh): every optimizer and
// dtype pair, odd sizes and one over a chunk, device-pointer views, clipping, loss scaling,
// stochastic rounding, lazy updates, metrics and stepAsync, a few steps each, on the GPU.
// Exits non-zero on any error; memcheck and racecheck report what the kernels did wrong.
import { AdamW, AdamWDL, GradScaler, Lion, Parameter, Tensor, backendInfo } from '../dist/esm/index.mjs';

const info = backendInfo();
if (info.backend !== 'cuda') {
  console.error(`gpu-smoke: needs the CUDA backend, got ${info.backend} (${info.cudaError ?? ''})`);
  process.exit(1);
}
const SIZES = [1, 3, 1001, 65537];
const PAIRS = [
  ['float32', 'float32'],
  ['float16', 'float16'],
  ['float16', 'float32'],
  ['bfloat16', 'bfloat16'],
  ['bfloat16', 'float32'],
];
let seed = 1;
const random = (n, scale) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return ((seed / 2 ** 32) * 2 - 1) * scale;
  });

const builds = {
  adamw: (ps) =>
    new AdamW(ps, { lr: 1e-3, weightDecay: 0.01, amsgrad: true, gradClip: { type: 'globalNorm', maxNorm: 1 } }),
  adamwdl: (ps) =>
    new AdamWDL(ps, { lr: 1e-3, layerwiseDecay: 0.8, nLayers: 4, gradClip: { type: 'norm', maxNorm: 0.5 } }),
  lion: (ps) => new Lion(ps, { lr: 1e-4, stochasticRounding: true, gradClip: { type: 'value', max: 0.05 } }),
};
for (const [name, build] of Object.entries(builds)) {
  for (const [dtype, gradDtype] of PAIRS) {
    const params = SIZES.map(
      (n, i) =>
        new Parameter(Tensor.from(random(n, 0.5), { dtype, device: 'cuda' }), { name: `encoder.layers.${i}.w` }),
    );
    const opt = build(params);
    const scaler = new GradScaler({ initScale: 256 });
    for (let step = 0; step < 3; step++) {
      for (const p of params)
        p.grad = Tensor.from(random(p.data.numel, 0.05 * 256), { dtype: gradDtype, device: 'cuda' });
      scaler.step(opt);
      scaler.update();
    }
    opt.metrics();
    await opt.stepAsync();
    opt.synchronize();
    console.log(`gpu-smoke: ${name} ${dtype}/${gradDtype} ok`);
  }
}

// Views at element offsets (the scalar path) and a lazy row-sparse update.
const backing = Tensor.zeros([70000], { device: 'cuda' });
const view = Tensor.fromDevicePointer(backing.devicePointer + 4n, { shape: [69990] });
const p = new Parameter(view, { name: 'view' });
const table = new Parameter(Tensor.from(random(300 * 12, 0.5), { shape: [300, 12], device: 'cuda' }), {
  name: 'embedding',
});
const opt = new AdamW([p, table], { lr: 1e-3, lazyMode: true });
for (let step = 0; step < 3; step++) {
  p.grad = Tensor.from(random(69990, 0.05), { device: 'cuda' });
  const rows = Int32Array.from([step, 100 + step, 299]);
  table.sparseGrad = { rows, values: Tensor.from(random(rows.length * 12, 0.05), { shape: [3, 12], device: 'cuda' }) };
  opt.step();
}
opt.synchronize();
console.log('gpu-smoke: views and lazy mode ok');
