// Deterministic models for the checkpoint suites, shared by the vitest files (which pass the
// library from src/) and the child processes of the cross-process tests (which pass it from
// dist/cjs): `build(lib, options)` makes the same params, groups, optimizer, scheduler and
// grad sequence in both.
//
// Run as a script it is the child process:
//   node checkpoint_model.cjs <dist index.js> train <json options> <from> <to> [save <file>] [load <file>]
// prints one JSON line: { fingerprint } after loading (if asked), training steps [from, to)
// and saving (if asked);
//   node checkpoint_model.cjs <dist index.js> saver <json options> <file> <count>
// saves to one file again and again (see saver());
//   node checkpoint_model.cjs <dist index.js> grads <json options> <from> <to> <file>
// writes the grads of steps [from, to) to a safetensors file (test/fixtures/torch_interop_check.py).
'use strict';
const { createHash } = require('node:crypto');

const KINDS = ['AdamW', 'AdamWDL', 'Lion'];
const DTYPES = ['float32', 'float16', 'bfloat16'];
const SCHEDULERS = [
  'none',
  'TransformerLR',
  'LambdaLR',
  'LinearLR',
  'CosineAnnealingLR',
  'SequentialLR',
  'linearWarmup',
];

/** mulberry32: reproducible uniform numbers in [0, 1). */
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

function values(n, next, scale) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

// name, shape, group, grad dtype ('own': the param's), first step with a grad
const SPECS = [
  { name: 'encoder.layers.0.attention.weight', shape: [37, 3], group: 0, grad: 'float32', from: 0 },
  { name: 'encoder.layers.1.output.bias', shape: [5], group: 1, grad: 'own', from: 0 },
  { name: 'embeddings.word_embeddings.weight', shape: [1001], group: 0, grad: 'float32', from: 0 },
  // No grad before step 12: no state at a save after 10 steps, stepping after a resume.
  { name: 'head.late.weight', shape: [13], group: 1, grad: 'float32', from: 12 },
];

const GROUPS = {
  AdamW: [
    { lr: 0.03, weightDecay: 0.1, amsgrad: true },
    { lr: 0.02, weightDecay: 0.01, maximize: true },
  ],
  AdamWDL: [
    { lr: 0.03, weightDecay: 0.1, amsgrad: true },
    { lr: 0.02, weightDecay: 0.01 },
  ],
  Lion: [
    { lr: 0.01, weightDecay: 5e-4 },
    { lr: 0.02, betas: [0.95, 0.98], weightDecay: 0 },
  ],
};

/**
 * @param lib  the fused-optim exports (src/index or dist/cjs/index.js)
 * @param o    { kind, dtype, scheduler = 'none', init = 1, masterWeights = true, reversed = false, scale = 1 }
 *             init: the seed of the initial values (a resumed run starts from other ones);
 *             reversed: the params listed in reverse order inside each group (names stay);
 *             scale: multiplies every size (for large checkpoints)
 */
function build(lib, o) {
  const { kind, dtype, scheduler = 'none', init = 1, masterWeights = true, reversed = false, scale = 1 } = o;
  const next = rng(init);
  const params = SPECS.map(
    (s) =>
      new lib.Parameter(
        lib.Tensor.from(values(s.shape.reduce((a, b) => a * b, 1) * scale, next, 0.5), {
          dtype,
          shape: [s.shape[0] * scale, ...s.shape.slice(1)],
        }),
        { name: s.name },
      ),
  );
  const groups = GROUPS[kind].map((g, gi) => {
    const ps = params.filter((_, i) => SPECS[i].group === gi);
    return { ...g, params: reversed ? ps.reverse() : ps };
  });
  const options = { betas: [0.9, 0.99], masterWeights };
  const opt =
    kind === 'Lion'
      ? new lib.Lion(groups, { masterWeights })
      : kind === 'AdamW'
        ? new lib.AdamW(groups, options)
        : new lib.AdamWDL(groups, { ...options, layerwiseDecay: 0.8, nLayers: 4 });
  let sched;
  switch (scheduler) {
    case 'none':
      break;
    case 'TransformerLR':
      sched = new lib.TransformerLR(opt, { dModel: 64, warmupSteps: 6 });
      break;
    case 'LambdaLR':
      sched = new lib.LambdaLR(opt, [(s) => 1 / (1 + 0.1 * s), (s) => 0.97 ** s]);
      break;
    case 'LinearLR':
      sched = new lib.LinearLR(opt, { startFactor: 0.25, totalIters: 15 });
      break;
    case 'CosineAnnealingLR':
      sched = new lib.CosineAnnealingLR(opt, { tMax: 25, etaMin: 1e-4 });
      break;
    case 'SequentialLR': {
      const warm = new lib.LinearLR(opt, { startFactor: 0.1, totalIters: 4 });
      const cos = new lib.CosineAnnealingLR(opt, { tMax: 20 });
      sched = new lib.SequentialLR(opt, { schedulers: [warm, cos], milestones: [4] });
      break;
    }
    case 'linearWarmup':
      // Lion refuses lr 0, which a warmup starts from: no warmup for it, only the decay.
      sched = lib.linearWarmup(opt, { warmupSteps: kind === 'Lion' ? 0 : 4, totalSteps: 30 });
      break;
    default:
      throw new Error(`unknown scheduler ${scheduler}`);
  }
  const gradTensors = params.map((p, i) =>
    lib.Tensor.zeros(p.data.shape, { dtype: SPECS[i].grad === 'own' ? dtype : 'float32' }),
  );
  /** Gives every param its grad for step `s` (the same in every process for every init). */
  function grads(s) {
    const g = rng(1000 + s);
    params.forEach((p, i) => {
      const v = values(p.data.numel, g, 0.2);
      if (s < SPECS[i].from) {
        p.grad = null;
        return;
      }
      gradTensors[i].copyFrom(v);
      p.grad = gradTensors[i];
    });
  }
  function train(from, to) {
    for (let s = from; s < to; s++) {
      grads(s);
      opt.step();
      if (sched) sched.step();
    }
  }
  return { params, opt, sched, grads, train };
}

function hashBits(a) {
  return createHash('sha1')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex')
    .slice(0, 16);
}

/** Everything a resume must reproduce, with buffers as hashes of their bits, by param name. */
function fingerprint(m) {
  const flat = m.opt.paramGroups.flatMap((g) => g.params);
  const sd = m.opt.stateDict();
  const walk = (v) => {
    if (ArrayBuffer.isView(v)) return `${v.constructor.name}:${v.length}:${hashBits(v)}`;
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    if (typeof v === 'number' && (Number.isNaN(v) || Object.is(v, -0))) return String(Object.is(v, -0) ? '-0' : v);
    return v;
  };
  const state = {};
  for (const [i, s] of Object.entries(sd.state)) state[flat[Number(i)].name] = walk(s);
  const { state: _s, param_groups, ...others } = sd;
  return {
    params: Object.fromEntries(
      m.params.map((p) => [
        p.name,
        `${p.data.dtype}:${hashBits(p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())}`,
      ]),
    ),
    state,
    groups: param_groups.map((g, gi) => ({ ...g, params: m.opt.paramGroups[gi].params.map((p) => p.name).sort() })),
    others: walk(others),
    scheduler: m.sched ? walk(m.sched.stateDict()) : null,
  };
}

/**
 * Saves to `file` again and again (`count` times, or forever if 0): before save i every
 * param holds the value i and extra is { i }, so a file mixing two saves would show. Prints
 * `begin i` before and `saved i <ms>` after each save.
 */
async function saver(lib, o, file, count) {
  const m = build(lib, o);
  m.train(0, 1); // optimizer state for every param that has a grad
  for (let i = 1; count === 0 || i <= count; i++) {
    for (const p of m.params) p.data.copyFrom(new Float32Array(p.data.numel).fill(i));
    process.stdout.write(`begin ${i}\n`);
    const t0 = Date.now();
    await lib.saveCheckpoint(file, { params: m.params, optimizer: m.opt, extra: { i } });
    process.stdout.write(`saved ${i} ${Date.now() - t0}\n`);
  }
}

module.exports = { KINDS, DTYPES, SCHEDULERS, SPECS, rng, values, build, fingerprint };

if (require.main === module) {
  const [dist, command, json, from, to, ...rest] = process.argv.slice(2);
  const lib = require(dist);
  (async () => {
    if (command === 'saver') return saver(lib, JSON.parse(json), from, Number(to));
    if (command === 'grads') {
      // The grads of steps [from, to) as float32 values, `grad.<step>.<name>`, to replay elsewhere.
      const m = build(lib, JSON.parse(json));
      const tensors = {};
      for (let step = Number(from); step < Number(to); step++) {
        m.grads(step);
        for (const p of m.params)
          if (p.grad) tensors[`grad.${step}.${p.name}`] = { data: p.grad.toFloat32Array(), shape: [...p.data.shape] };
      }
      await lib.writeSafetensors(rest[0], tensors);
      return;
    }
    if (command !== 'train') throw new Error(`unknown command ${command}`);
    const m = build(lib, JSON.parse(json));
    const args = {};
    for (let i = 0; i < rest.length; i += 2) args[rest[i]] = rest[i + 1];
    if (args.load) await lib.loadCheckpoint(args.load, { params: m.params, optimizer: m.opt, scheduler: m.sched });
    m.train(Number(from), Number(to));
    if (args.save)
      await lib.saveCheckpoint(args.save, {
        params: m.params,
        optimizer: m.opt,
        scheduler: m.sched,
        extra: { step: Number(to) },
      });
    process.stdout.write(`${JSON.stringify({ fingerprint: fingerprint(m) })}\n`);
  })().catch((e) => {
    process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  });
}
