#!/usr/bin/env node
// Host time per step of AdamW driven by TransformerLR, to show that a new lr every step
// costs no rebuild of the launch plan: the lr travels in the per-step scalar table, so the
// time per step stays flat over 10,000 steps and matches the same loop at a constant lr.
//
//   npm run build:ts && node bench/scheduler_overhead.mjs [--steps 10000] [--window 1000]
//   (FUSED_OPTIM_THREADS=2 ... to time the multi-thread pool instead of one thread)
//
// 200 small fp32 tensors shaped like a 12-layer, d_model = 8 transformer, on the CPU
// backend: the tensors are tiny so that the per-step host work (JavaScript + the native
// prepare) dominates, which is what the schedule could make worse. Timings are printed,
// never asserted.

function parseArgs(argv) {
  const opts = { steps: 10_000, window: 1_000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const key = { '--steps': 'steps', '--window': 'window' }[flag];
    if (!key) {
      console.error(
        `scheduler_overhead: unknown option ${JSON.stringify(argv[i])}\nusage: node bench/scheduler_overhead.mjs [--steps N] [--window N]`,
      );
      process.exit(2);
    }
    const value = inline ?? argv[++i];
    if (!/^\d+$/.test(value ?? '') || Number(value) < 1) {
      console.error(`scheduler_overhead: ${flag} must be a positive integer, got ${JSON.stringify(value)}`);
      process.exit(2);
    }
    opts[key] = Number(value);
  }
  if (opts.steps % opts.window !== 0) {
    console.error('scheduler_overhead: --steps must be a multiple of --window');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
process.env.FUSED_OPTIM_DEVICE ??= 'cpu';
// One thread unless told otherwise: with tensors this small the step is host work, and each
// step of a multi-thread pool also waits for a worker to wake, which takes tens of
// microseconds that vary with the machine's state and would drown what is measured here.
process.env.FUSED_OPTIM_THREADS ??= '1';
let fo;
try {
  fo = await import('fused-optim');
} catch (e) {
  console.error(`scheduler_overhead: cannot load fused-optim (run \`npm run build:ts\` first): ${e.message}`);
  process.exit(1);
}
const { AdamW, Parameter, Tensor, TransformerLR, backendInfo } = fo;

const D_MODEL = 8;
const LAYERS = 12;
const VOCAB = 64;

// name -> element count: 6 + 12 * 16 + 2 = 200 tensors.
function modelShapes() {
  const shapes = [
    ['embed.tokens.weight', VOCAB * D_MODEL],
    ['embed.positions.weight', 64 * D_MODEL],
  ];
  for (let l = 0; l < LAYERS; l++) {
    const p = `encoder.layers.${l}`;
    for (const m of ['q', 'k', 'v', 'o'])
      shapes.push([`${p}.attn.${m}.weight`, D_MODEL * D_MODEL], [`${p}.attn.${m}.bias`, D_MODEL]);
    for (const n of ['ln1', 'ln2']) shapes.push([`${p}.${n}.weight`, D_MODEL], [`${p}.${n}.bias`, D_MODEL]);
    shapes.push(
      [`${p}.ffn.fc1.weight`, 4 * D_MODEL * D_MODEL],
      [`${p}.ffn.fc1.bias`, 4 * D_MODEL],
      [`${p}.ffn.fc2.weight`, 4 * D_MODEL * D_MODEL],
      [`${p}.ffn.fc2.bias`, D_MODEL],
    );
  }
  shapes.push(
    ['final_ln.weight', D_MODEL],
    ['final_ln.bias', D_MODEL],
    ['pooler.weight', D_MODEL * D_MODEL],
    ['pooler.bias', D_MODEL],
  );
  shapes.push(['head.weight', 2 * D_MODEL], ['head.bias', 2]);
  return shapes;
}

function makeModel() {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  const params = modelShapes().map(([name, n]) => {
    const p = new Parameter(Tensor.from(Float32Array.from({ length: n }, rand), { device: 'cpu' }), { name });
    // The grads stay the same every step: this measures the step, not a backward pass.
    p.grad = Tensor.from(Float32Array.from({ length: n }, rand), { device: 'cpu' });
    return p;
  });
  // Weight decay off for biases and LayerNorm weights, as noDecayParamGroups does (docs/design.md section 7).
  const noDecay = (p) => p.name.endsWith('.bias') || p.name.includes('ln');
  const opt = new AdamW(
    [
      { params: params.filter((p) => !noDecay(p)), weightDecay: 0.01 },
      { params: params.filter(noDecay), weightDecay: 0 },
    ],
    { lr: 1, betas: [0.9, 0.98], eps: 1e-9 },
  );
  return { params, opt };
}

// Times each step of two loops, alternating in chunks so that both see the same machine
// state (other processes, the CPU pool's worker wake-ups): per-step microseconds of each.
function timeInterleaved(steps, a, b, chunk = 50) {
  const ua = new Float64Array(steps);
  const ub = new Float64Array(steps);
  for (let start = 0; start < steps; start += chunk) {
    for (const [body, out] of [
      [a, ua],
      [b, ub],
    ]) {
      for (let i = start; i < Math.min(start + chunk, steps); i++) {
        const t0 = process.hrtime.bigint();
        body();
        out[i] = Number(process.hrtime.bigint() - t0) / 1e3;
      }
    }
  }
  return [ua, ub];
}

function timeSteps(steps, body) {
  return timeInterleaved(steps, body, () => {})[0];
}

const median = (a) => {
  const s = Float64Array.from(a).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const fmt = (x, d = 1) => x.toFixed(d).padStart(7);

function windows(us) {
  const out = [];
  for (let i = 0; i < us.length; i += opts.window) out.push(us.subarray(i, i + opts.window));
  return out;
}

const info = backendInfo();
const model = makeModel();
const constant = makeModel();
const numel = model.params.reduce((n, p) => n + p.data.numel, 0);
console.log(`fused-optim scheduler overhead: ${info.backend} backend (${info.device}), node ${process.version}`);
console.log(
  `model: ${model.params.length} fp32 tensors (${Math.min(...model.params.map((p) => p.data.numel))} to ` +
    `${Math.max(...model.params.map((p) => p.data.numel))} elements, ${numel} in all), 2 param groups; ` +
    `${opts.steps} steps, windows of ${opts.window}`,
);

// Warm up the JIT, the state buffers and the thread pool before the scheduler exists.
for (let i = 0; i < 2_000; i++) {
  model.opt.step();
  constant.opt.step();
}

// AdamW + TransformerLR, `sched.step(); opt.step()` as the seed orders them (torch's order is
// opt.step() first; this package warns once about it, as torch does), interleaved with the
// same optimizer at a constant lr for reference.
const sched = new TransformerLR(model.opt, { dModel: D_MODEL, warmupSteps: 4000 });
const [scheduled, baseline] = timeInterleaved(
  opts.steps,
  () => {
    sched.step();
    model.opt.step();
  },
  () => constant.opt.step(),
);
const finalLr = model.opt.paramGroups[0].lr;

// The scheduler's own share: sched.step() alone, on a fresh optimizer of the same shape.
const alone = makeModel();
const schedAlone = new TransformerLR(alone.opt, { dModel: D_MODEL, warmupSteps: 4000 });
const schedOnly = timeSteps(opts.steps, () => schedAlone.step());

const ws = windows(scheduled);
const bs = windows(baseline);
const so = windows(schedOnly);
console.log('\nhost time per step, microseconds: median per window [mean]');
console.log('  steps         TransformerLR + AdamW    AdamW, constant lr    ratio   sched.step() alone');
ws.forEach((w, i) => {
  const range = `${i * opts.window}-${(i + 1) * opts.window - 1}`.padEnd(11);
  console.log(
    `  ${range}  ${fmt(median(w))} [${fmt(mean(w))}]     ${fmt(median(bs[i]))} [${fmt(mean(bs[i]))}]   ` +
      `${fmt(median(w) / median(bs[i]), 2)}   ${fmt(median(so[i]), 2)}`,
  );
});

const medians = ws.map(median);
const ratios = ws.map((w, i) => median(w) / median(bs[i]));
const first = medians[0];
const last = medians[medians.length - 1];
const lo = Math.min(...medians);
const hi = Math.max(...medians);
console.log(`\nfirst ${opts.window} steps: median ${first.toFixed(1)} us, mean ${mean(ws[0]).toFixed(1)} us`);
console.log(`last ${opts.window} steps:  median ${last.toFixed(1)} us, mean ${mean(ws[ws.length - 1]).toFixed(1)} us`);
console.log(
  `window medians: ${lo.toFixed(1)} to ${hi.toFixed(1)} us (max/min ${(hi / lo).toFixed(2)}), last/first ${(last / first).toFixed(2)}`,
);
console.log(
  `all ${opts.steps} steps: median ${median(scheduled).toFixed(1)} us scheduled vs ${median(baseline).toFixed(1)} us at a constant lr; ` +
    `sched.step() alone: median ${median(schedOnly).toFixed(2)} us`,
);
console.log(
  `lr after ${opts.steps} steps: ${finalLr.toExponential(4)} (peak, at step 4000: ${((D_MODEL * 4000) ** -0.5).toExponential(4)})`,
);
// Flat: the last window is within 25% of the first, and no window's median is more than 25%
// above the constant-lr loop's (a plan rebuild on every lr change would show as a gap there;
// machine noise hits both loops alike).
const flat = Math.abs(last / first - 1) <= 0.25 && Math.max(...ratios) <= 1.25;
console.log(
  `flat: ${flat ? 'yes' : 'no'} (last/first window within 25%; every window within 25% of the constant-lr loop)`,
);
