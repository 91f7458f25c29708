#!/usr/bin/env node
// fused-optim demo: trains a tiny MLP (16 -> 64 -> 1, tanh) on a synthetic regression task.
//
// The model's forward and backward passes are plain JavaScript over Float32Arrays; only the
// optimizer step runs in fused-optim. That is the package's contract: you bring parameters
// and gradients, it does everything after backward().
//
//   npm run demo
//   npm run demo -- --steps 500 --dtype bfloat16 --lr 0.005
//
// Options:
//   --steps N     optimizer steps (default 300)
//   --dtype D     parameter dtype: float32 | float16 | bfloat16 (default float32);
//                 gradients are always float32, half params get fp32 master weights
//   --lr X        learning rate (default 0.01)
//   --help        print this help
//
// Exit codes: 0 done, 1 the package could not be loaded, 2 bad command-line options.

const DTYPES = ['float32', 'float16', 'bfloat16'];
const USAGE = 'usage: npm run demo -- [--steps N] [--dtype float32|float16|bfloat16] [--lr X]';

// ---------------------------------------------------------------------------------------
// Options. Parsed before the package is imported, so a typo is reported at once even on a
// checkout that has not been built.
// ---------------------------------------------------------------------------------------

function fail(message) {
  console.error(`demo: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseOptions(argv) {
  const opts = { steps: 300, dtype: 'float32', lr: 0.01 };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2); // accept both --lr 0.01 and --lr=0.01
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (!['--steps', '--dtype', '--lr'].includes(flag)) fail(`unknown option ${JSON.stringify(argv[i])}`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) fail(`${flag} needs a value`);
    }
    if (flag === '--steps') {
      // Number('') is 0 and Number('1e2') is 100: insist on plain digits.
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1_000_000) {
        fail(`--steps must be an integer from 1 to 1000000, got ${JSON.stringify(value)}`);
      }
      opts.steps = Number(value);
    } else if (flag === '--dtype') {
      if (!DTYPES.includes(value)) fail(`--dtype must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(value)}`);
      opts.dtype = value;
    } else {
      const lr = value.trim() === '' ? NaN : Number(value);
      if (!Number.isFinite(lr) || lr <= 0 || lr > 1) fail(`--lr must be a number in (0, 1], got ${JSON.stringify(value)}`);
      opts.lr = lr;
    }
  }
  return opts;
}

const opts = parseOptions(process.argv.slice(2));

// ---------------------------------------------------------------------------------------
// Load the package by name (package self-reference through the exports map). The ESM
// entry lives in dist/, which `npm install` builds; the native addon is loaded lazily by
// the first call that needs it, so both failures are caught here with a clear message.
// ---------------------------------------------------------------------------------------

let lib;
let info;
try {
  lib = await import('fused-optim');
  info = lib.backendInfo();
} catch (e) {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND') {
    console.error(
      'demo: cannot load fused-optim: its compiled JavaScript (dist/) is missing.\n' +
        'Run `npm install` in the package root (or `npm run build:ts` if the addon is already built).\n' +
        `(${e.message})`,
    );
  } else {
    console.error(`demo: cannot start fused-optim: ${e && e.message ? e.message : e}`);
  }
  process.exit(1);
}
const { Tensor, Parameter, AdamW } = lib;

// ---------------------------------------------------------------------------------------
// Data: y = sin(x.u) + 0.5 (x.v)^2 - 0.5 for x ~ N(0, I16), u and v random unit vectors.
// Nonlinear enough that a linear model cannot fit it, and its variance is about 1, so the
// untrained loss starts near 1. A seeded PRNG makes every run print the same numbers.
// ---------------------------------------------------------------------------------------

const IN = 16;
const HIDDEN = 64;
const N_TRAIN = 4096;
const N_TEST = 1024;
const BATCH = 256;

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(1234);
const uniform = (lo, hi) => lo + (hi - lo) * rand();
const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()); // Box-Muller

function unitVector(n) {
  const v = Array.from({ length: n }, normal);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}
const u = unitVector(IN);
const v = unitVector(IN);

function makeDataset(n) {
  const x = new Float32Array(n * IN);
  const y = new Float32Array(n);
  for (let s = 0; s < n; s++) {
    let xu = 0;
    let xv = 0;
    for (let k = 0; k < IN; k++) {
      const xk = normal();
      x[s * IN + k] = xk;
      xu += xk * u[k];
      xv += xk * v[k];
    }
    y[s] = Math.sin(xu) + 0.5 * xv * xv - 0.5;
  }
  return { x, y, n };
}
const train = makeDataset(N_TRAIN);
const test = makeDataset(N_TEST);

// ---------------------------------------------------------------------------------------
// Parameters: torch.nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for
// weights and biases. Weights are row-major [out, in].
// ---------------------------------------------------------------------------------------

function param(name, shape, fanIn) {
  const bound = 1 / Math.sqrt(fanIn);
  const values = Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => uniform(-bound, bound));
  const p = new Parameter(Tensor.from(values, { shape, dtype: opts.dtype }), { name });
  // One float32 grad tensor per param, allocated once and overwritten every step
  // (grads may be float32 whatever the param's dtype).
  p.grad = Tensor.zeros(shape, { dtype: 'float32' });
  return p;
}
const w1 = param('fc1.weight', [HIDDEN, IN], IN);
const b1 = param('fc1.bias', [HIDDEN], IN);
const w2 = param('fc2.weight', [1, HIDDEN], HIDDEN);
const b2 = param('fc2.bias', [1], HIDDEN);

// Two param groups, the seed course's rule: decoupled weight decay on the weights, none on
// the biases. A bias is an offset, not a scale on the inputs, so pulling it towards zero
// does little to regularize and only fights the fit.
// (Group options override the defaults in the second argument.)
const opt = new AdamW(
  [
    { params: [w1, w2], weightDecay: 0.01 },
    { params: [b1, b2], weightDecay: 0 },
  ],
  { lr: opts.lr, betas: [0.9, 0.999], eps: 1e-8 },
);

// ---------------------------------------------------------------------------------------
// Forward and backward over a batch of samples; the loss is the mean squared error.
// ---------------------------------------------------------------------------------------

// Scratch gradient buffers, reused every step.
const gW1 = new Float32Array(HIDDEN * IN);
const gB1 = new Float32Array(HIDDEN);
const gW2 = new Float32Array(HIDDEN);
const gB2 = new Float32Array(1);
const h = new Float32Array(HIDDEN);

// Returns the loss over the samples `rows` of `data`; when `withGrad`, also fills gW1, gB1,
// gW2, gB2 with dLoss/dparam.
function forwardBackward([W1, B1, W2, B2], data, rows, withGrad) {
  if (withGrad) {
    gW1.fill(0);
    gB1.fill(0);
    gW2.fill(0);
    gB2.fill(0);
  }
  let loss = 0;
  for (const s of rows) {
    const xo = s * IN;
    // hidden = tanh(W1 x + b1); out = W2 hidden + b2
    let out = B2[0];
    for (let j = 0; j < HIDDEN; j++) {
      let z = B1[j];
      for (let k = 0; k < IN; k++) z += W1[j * IN + k] * data.x[xo + k];
      h[j] = Math.tanh(z);
      out += W2[j] * h[j];
    }
    const err = out - data.y[s];
    loss += err * err;
    if (!withGrad) continue;
    // d(mean err^2)/d out = 2 err / batch size, then the chain rule back through both layers.
    const dOut = (2 * err) / rows.length;
    gB2[0] += dOut;
    for (let j = 0; j < HIDDEN; j++) {
      gW2[j] += dOut * h[j];
      const dz = dOut * W2[j] * (1 - h[j] * h[j]); // tanh' = 1 - tanh^2
      gB1[j] += dz;
      for (let k = 0; k < IN; k++) gW1[j * IN + k] += dz * data.x[xo + k];
    }
  }
  return loss / rows.length;
}
const allRows = (data) => Array.from({ length: data.n }, (_, i) => i);

// The weights the model actually computes with: for float16/bfloat16 params these are the
// rounded half values, while the optimizer keeps the full-precision fp32 master copy.
const weights = () => [w1, b1, w2, b2].map((p) => p.data.toFloat32Array());

// ---------------------------------------------------------------------------------------
// Training loop: minibatch AdamW, reshuffling the training set every epoch. Minibatches
// keep each step cheap, and 4096 samples for ~1100 weights keep the model from merely
// memorizing its data (the held-out loss at the end checks that).
// ---------------------------------------------------------------------------------------

console.log('backendInfo():', info);
console.log(
  `training a ${IN} -> ${HIDDEN} -> 1 tanh MLP: ${N_TRAIN} samples, batch ${BATCH}, ${opts.steps} steps, ` +
    `params ${opts.dtype} (grads float32), AdamW lr ${opts.lr}`,
);

const order = allRows(train);
let cursor = order.length; // start with a shuffle
function nextBatch() {
  if (cursor + BATCH > order.length) {
    for (let i = order.length - 1; i > 0; i--) { // Fisher-Yates
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    cursor = 0;
  }
  cursor += BATCH;
  return order.slice(cursor - BATCH, cursor);
}

const initialLoss = forwardBackward(weights(), train, allRows(train), false);
const every = Math.max(1, Math.round(opts.steps / 10)); // about ten progress lines
console.log(`(loss = mean minibatch loss since the previous line; step 0 = whole training set before training)`);
console.log(`step ${'0'.padStart(String(opts.steps).length)}  loss ${initialLoss.toFixed(6)}`);

const started = performance.now();
let windowSum = 0;
let windowSteps = 0;
for (let step = 1; step <= opts.steps; step++) {
  windowSum += forwardBackward(weights(), train, nextBatch(), true);
  windowSteps++;

  // Hand the grads to the optimizer. copyFrom overwrites every element, so nothing from
  // the last step is left to clear: opt.zeroGrad() is not needed here (by default it sets
  // every p.grad to null, and step() skips params whose grad is null).
  w1.grad.copyFrom(gW1);
  b1.grad.copyFrom(gB1);
  w2.grad.copyFrom(gW2);
  b2.grad.copyFrom(gB2);
  opt.step(); // one fused native call updates all four params, both groups

  if (step % every === 0 || step === opts.steps) {
    console.log(`step ${String(step).padStart(String(opts.steps).length)}  loss ${(windowSum / windowSteps).toFixed(6)}`);
    windowSum = 0;
    windowSteps = 0;
  }
}
const seconds = (performance.now() - started) / 1000;

// Judge the trained weights on the whole training set (the same measure as step 0) and on
// held-out data the model never saw.
const finalLoss = forwardBackward(weights(), train, allRows(train), false);
const heldOut = forwardBackward(weights(), test, allRows(test), false);
const stepCount = opt.stateDict().state[0].step; // the optimizer's own count, torch layout

console.log(`held-out loss ${heldOut.toFixed(6)} (${N_TEST} unseen samples)`);
const ratio = initialLoss / finalLoss;
const change =
  ratio >= 2 ? `${ratio.toFixed(ratio >= 10 ? 0 : 1)}x lower` : ratio > 1 ? `${((1 - 1 / ratio) * 100).toFixed(1)}% lower` : 'did not fall';
console.log(
  `train loss ${initialLoss.toFixed(6)} -> ${finalLoss.toFixed(6)} (${change}) ` +
    `after ${stepCount} steps, ${seconds.toFixed(2)} s`,
);
