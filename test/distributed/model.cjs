// A deterministic training problem for the MPI suites. Each sample s of step t has a
// quadratic loss 0.5 * w_s * |p - target_s|^2 per param, so its grad is w_s * (p - target_s)
// (in fp32, rounded at every operation, as a framework's kernels would): the grads depend
// on the params, so any difference between two runs shows up in the next steps.
//
// A rank's grad is the mean over its samples (1/N of the batch). The single-process run
// on the whole batch takes the mean of the N per-rank means, added in rank order: the one
// summation order a data-parallel all-reduce can be made to follow (ordered: true), and
// the order of every two-rank sum (a + b == b + a).
'use strict';

const BATCH = 8;

/** mulberry32 */
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

// Odd sizes, one larger than a 65536-element chunk, one without a grad before step 2.
const SPECS = [
  { name: 'encoder.layers.0.attention.weight', shape: [37, 3], group: 0, from: 0 },
  { name: 'encoder.layers.1.output.bias', shape: [5], group: 1, from: 0 },
  { name: 'embeddings.word_embeddings.weight', shape: [70001], group: 0, from: 0 },
  { name: 'encoder.layers.2.scale', shape: [1], group: 1, from: 0 },
  { name: 'encoder.layers.3.ffn.weight', shape: [4099], group: 0, from: 0 },
  { name: 'head.late.weight', shape: [13], group: 1, from: 2 },
];

const GROUPS = {
  AdamW: [
    { lr: 0.03, weightDecay: 0.1, amsgrad: true },
    { lr: 0.02, weightDecay: 0.01, maximize: true },
  ],
  AdamWDL: [
    { lr: 0.03, weightDecay: 0.1 },
    { lr: 0.02, weightDecay: 0.01 },
  ],
  Lion: [
    { lr: 0.01, weightDecay: 5e-4 },
    { lr: 0.02, betas: [0.95, 0.98], weightDecay: 0 },
  ],
};

function numel(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/** The params, equal in every rank and every run for the same seed. */
function buildParams(lib, { dtype = 'float32', seed = 1, specs = SPECS } = {}) {
  const next = rng(seed);
  return specs.map((s) => {
    const v = new Float32Array(numel(s.shape));
    for (let i = 0; i < v.length; i++) v[i] = (next() * 2 - 1) * 0.5;
    return new lib.Parameter(lib.Tensor.from(v, { dtype, shape: s.shape }), { name: s.name });
  });
}

function groupsOf(kind, params, specs = SPECS) {
  return GROUPS[kind].map((g, gi) => ({ ...g, params: params.filter((_, i) => specs[i].group === gi) }));
}

/** The optimizer of `kind` over `input` (params or groups); `options` adds to the defaults. */
function makeOptimizer(lib, kind, input, options = {}) {
  if (kind === 'Lion') return new lib.Lion(input, options);
  if (kind === 'AdamW') return new lib.AdamW(input, { betas: [0.9, 0.99], ...options });
  return new lib.AdamWDL(input, { betas: [0.9, 0.99], layerwiseDecay: 0.8, nLayers: 4, ...options });
}

/** The mean grad over samples [from, to) of step `step`, for param `index` at values `p`. */
function meanGrad(p, index, step, from, to) {
  const f = Math.fround;
  const acc = new Float32Array(p.length);
  for (let s = from; s < to; s++) {
    const next = rng(100003 * (step + 1) + 7919 * s + index);
    const w = f(0.5 + next());
    for (let i = 0; i < p.length; i++) acc[i] = f(acc[i] + f(w * f(p[i] - f(next() * 2 - 1))));
  }
  const n = f(to - from);
  for (let i = 0; i < acc.length; i++) acc[i] = f(acc[i] / n);
  return acc;
}

/** Rank r's grad of param `index` (the mean over its BATCH / world samples). */
function rankGrad(p, index, step, rank, world) {
  const per = BATCH / world;
  return meanGrad(p, index, step, rank * per, (rank + 1) * per);
}

/**
 * The single-process grad on the whole batch: the per-rank means added in rank order,
 * divided by the rank count. `round` rounds a grad to the grad dtype (identity for fp32):
 * each rank's grad is rounded before the sum (it is a tensor of that dtype), and the result.
 */
function wholeBatchGrad(p, index, step, world, round = (x) => x) {
  const f = Math.fround;
  let acc;
  for (let r = 0; r < world; r++) {
    const g = round(rankGrad(p, index, step, r, world));
    if (!acc) acc = Float32Array.from(g);
    else for (let i = 0; i < acc.length; i++) acc[i] = f(acc[i] + g[i]);
  }
  for (let i = 0; i < acc.length; i++) acc[i] = f(acc[i] / world);
  return round(acc);
}

module.exports = {
  BATCH,
  SPECS,
  GROUPS,
  rng,
  numel,
  buildParams,
  groupsOf,
  makeOptimizer,
  meanGrad,
  rankGrad,
  wholeBatchGrad,
};
