// A small deterministic training run, the same on the main thread and in worker threads
// (test/workers.test.ts). `node worker_training.cjs DIST SCENARIO` runs a scenario in this
// process and prints one JSON line; in a worker it trains the config of workerData and posts
// the fingerprint back.
'use strict';
const { createHash } = require('node:crypto');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

/** Every config steps its own optimizer: sizes above one 65536-element chunk use the pool. */
const CONFIGS = [
  { optimizer: 'AdamW', dtype: 'float32', sizes: [70001, 3, 1], steps: 12, async: false, options: { lr: 1e-2 } },
  { optimizer: 'Lion', dtype: 'bfloat16', sizes: [131073, 5], steps: 12, async: true, options: { lr: 1e-3 } },
  {
    optimizer: 'AdamWDL',
    dtype: 'float16',
    sizes: [66000, 7],
    steps: 10,
    async: false,
    options: { lr: 1e-3, layerwiseDecay: 0.8, nLayers: 2 },
  },
  {
    optimizer: 'AdamW',
    dtype: 'float32',
    sizes: [200003],
    steps: 10,
    async: true,
    options: { amsgrad: true, gradClip: { type: 'globalNorm', maxNorm: 0.5 } },
  },
  { optimizer: 'Lion', dtype: 'float32', sizes: [99999, 2], steps: 12, async: false, options: { weightDecay: 1e-4 } },
];

function values(n, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.2;
  }
  return out;
}

/** Trains `config` and returns a sha256 of every param's bits and every state buffer. */
async function train(fo, config, seed) {
  const params = config.sizes.map((n, i) => {
    const p = new fo.Parameter(fo.Tensor.from(values(n, seed + i), { dtype: config.dtype, device: 'cpu' }), {
      name: `encoder.layers.${i % 2}.w${i}`,
    });
    p.grad = fo.Tensor.zeros([n], { device: 'cpu' });
    return p;
  });
  const opt = new fo[config.optimizer](params, config.options);
  for (let step = 1; step <= config.steps; step++) {
    params.forEach((p, i) => p.grad.copyFrom(values(p.data.numel, seed * 7919 + step * 31 + i)));
    if (config.async) await opt.stepAsync();
    else opt.step();
  }
  const hash = createHash('sha256');
  for (const p of params) {
    const bits = config.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits();
    hash.update(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
  }
  const sd = opt.stateDict();
  for (const entry of Object.values(sd.state))
    for (const v of Object.values(entry)) if (v instanceof Float32Array) hash.update(new Uint8Array(v.buffer));
  const first = params[0].data.toFloat32Array()[0];
  opt.dispose?.();
  for (const p of params) {
    p.data.dispose();
    p.grad.dispose();
  }
  return { fingerprint: hash.digest('hex'), first };
}

function startWorker(dist, task) {
  const worker = new Worker(__filename, { workerData: { dist, ...task } });
  const result = new Promise((resolve, reject) => {
    let message;
    worker.on('message', (m) => (message = m));
    worker.on('error', reject);
    worker.on('exit', (code) => resolve({ code, message }));
  });
  return { worker, result };
}

// Scenarios (run in a fresh process by the test):
//  concurrent: 4 workers and the main thread each train their own config at the same time;
//    then the main thread trains all five again, one after another. Prints both sets.
//  exits: one worker trains and exits (its objects alive), one is terminated mid-run and
//    one exits while a stepAsync() is in flight, while two others train to the end; then
//    the main thread keeps using the addon.
async function scenario(dist, name) {
  const fo = require(dist);
  const seeds = CONFIGS.map((_, i) => 1000 + 17 * i);
  if (name === 'concurrent') {
    const tensor = fo.Tensor.zeros([4]); // the main thread's addon is loaded before the workers'
    const workers = [1, 2, 3, 4].map((i) => startWorker(dist, { kind: 'train', config: i, seed: seeds[i] }));
    const mine = await train(fo, CONFIGS[0], seeds[0]);
    const done = await Promise.all(workers.map((w) => w.result));
    const concurrent = [mine, ...done.map((d) => (d.code === 0 ? d.message : { error: `exit ${d.code}` }))];
    const serial = [];
    for (let i = 0; i < CONFIGS.length; i++) serial.push(await train(fo, CONFIGS[i], seeds[i]));
    tensor.dispose();
    return { concurrent, serial };
  }
  if (name === 'exits') {
    const keep = fo.Tensor.from([1, 2, 3]);
    const leaver = startWorker(dist, { kind: 'leave' });
    const async = startWorker(dist, { kind: 'exit-during-step' });
    const stayers = [1, 2].map((i) => startWorker(dist, { kind: 'train', config: i, seed: seeds[i] }));
    // Terminated at different points of their step loops (a termination that lands inside a
    // native call must not abort the process).
    const killed = [0, 3, 10].map((delayMs) => {
      const w = startWorker(dist, { kind: 'spin' });
      w.worker.once('message', () => setTimeout(() => w.worker.terminate(), delayMs));
      return w;
    });
    const early = await Promise.all([leaver.result, async.result, ...killed.map((k) => k.result)]);
    // The main thread after three workers went away: new tensors, optimizers, steps.
    const p = new fo.Parameter(fo.Tensor.from([0.5, -0.5]));
    p.grad = fo.Tensor.from([1, 1]);
    const opt = new fo.AdamW([p], { lr: 0.1 });
    opt.step();
    await opt.stepAsync();
    const rest = await Promise.all(stayers.map((s) => s.result));
    const serial = [];
    for (const i of [1, 2]) serial.push(await train(fo, CONFIGS[i], seeds[i]));
    return {
      earlyExitCodes: early.map((e) => e.code),
      main: { keep: Array.from(keep.toFloat32Array()), stepped: Array.from(p.data.toFloat32Array()) },
      stayers: rest.map((r) => (r.code === 0 ? r.message : { error: `exit ${r.code}` })),
      serial,
    };
  }
  throw new Error(`unknown scenario ${name}`);
}

async function workerMain() {
  const fo = require(workerData.dist);
  const { kind } = workerData;
  if (kind === 'train') {
    parentPort.postMessage(await train(fo, CONFIGS[workerData.config], workerData.seed));
  } else if (kind === 'leave') {
    // Objects of every kind still alive when the environment goes away.
    const p = new fo.Parameter(fo.Tensor.from(values(70000, 3), { dtype: 'bfloat16' }));
    p.grad = fo.Tensor.from(values(70000, 4));
    const opt = new fo.Lion([p]);
    opt.step();
    globalThis.keep = { p, opt };
    process.exit(0);
  } else if (kind === 'exit-during-step') {
    const p = new fo.Parameter(fo.Tensor.from(values(300000, 5)));
    p.grad = fo.Tensor.from(values(300000, 6));
    const opt = new fo.AdamW([p]);
    opt.stepAsync();
    process.exit(0);
  } else if (kind === 'spin') {
    const p = new fo.Parameter(fo.Tensor.from(values(100000, 7)));
    p.grad = fo.Tensor.from(values(100000, 8));
    const opt = new fo.AdamW([p]);
    parentPort.postMessage('running');
    for (;;) opt.step();
  }
}

module.exports = { CONFIGS, train };

if (!isMainThread) {
  workerMain().catch((e) => {
    throw e;
  });
} else if (require.main === module) {
  const [dist, name] = process.argv.slice(2);
  scenario(dist, name).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (e) => {
      process.stderr.write(`${e.stack}\n`);
      process.exit(1);
    },
  );
}
