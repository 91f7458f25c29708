#!/usr/bin/env node
// The fused-optim benchmark suite (npm run bench). For every case of bench/cases.json, every
// optimizer (AdamW, AdamWDL, Lion) and every dtype (fp32; fp16/bf16 params with fp32 masters
// and 16-bit or fp32 grads), on the default backend: ms per step (median of repeated steps
// after warm-up), Mparams/s, bytes per param (the model of docs/design.md section 6, bench/cases.mjs), GB/s,
// and the fraction of the copy bandwidth measured in the same run (copyBandwidth(), at the
// start and at the end; the higher counts). Then the same cases for the peers (plain
// JavaScript, tfjs's Adam), TfjsOptimizer against tf.train.adam on tfjs models (bench/tfjs.mjs),
// the host overhead per step() call, and the cost of building and first stepping an optimizer
// of many tiny params (bench/many_params.mjs).
//
//   node bench/run.mjs [--quick] [--json | --markdown] [--filter REGEX] [--threads N]
//                      [--device cpu|cuda] [--no-peers] [--no-tfjs] [--no-overhead]
//                      [--no-many-params] [--out FILE]
//
// Mistakes are found before anything runs: an unknown option or a --filter that selects
// nothing exits 2, a --device that is not usable or an --out that cannot be written exits 1,
// each with one line on stderr.
//
// Progress goes to stderr; the table (or JSON, or Markdown) to stdout. Timings are reported,
// never asserted. Needs the TypeScript build (npm run build:ts) and the addon.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ALGOS, DTYPES, bytesPerParam, loadCases, scaledTensors } from './cases.mjs';
import { measureHostOverhead } from './host_overhead.mjs';
import { MANY_PARAMS_COUNTS, manyParamsId, measureManyParams } from './many_params.mjs';
import { createJsPeer, createTfjsPeer, loadTfjs, timePeer } from './peers.mjs';
import { createProgress } from './progress.mjs';
import { renderReport, targetFor } from './report.mjs';
import { runTfjsBench, tfjsProgressCount } from './tfjs.mjs';
import { median, nowMs, quantile } from './stats.mjs';

const USAGE = `usage: node bench/run.mjs [options]
  --quick            small sizes and few repetitions (a smoke test; finishes in seconds)
  --json             print the results as JSON instead of the table
  --markdown         print the tables as Markdown (for docs/benchmarks.md)
  --out FILE         also write the JSON results to FILE
  --filter REGEX     only the runs whose id "case/optimizer/dtype" matches, e.g. one-big/adamw/fp32,
                     "transformer", "/lion/", "bf16$" (peers follow the fp32 runs selected;
                     "tfjs" selects the TensorFlow.js case alone)
  --threads N        CPU threads (sets FUSED_OPTIM_THREADS; default: one per core)
  --device cpu|cuda  backend (sets FUSED_OPTIM_DEVICE; default: CUDA when usable, else CPU)
  --no-peers         skip the JavaScript and tfjs peers
  --no-tfjs          skip the TensorFlow.js case (TfjsOptimizer vs tf.train.adam on tfjs models)
  --no-overhead      skip the host overhead measurement
  --no-many-params   skip building and first-stepping optimizers of 100k and 1M tiny params
                     (their ids: many-params/100k, many-params/1m; --quick: 10k, 100k)
  --no-progress      no progress output on stderr
  --from FILE        run nothing: print the results saved by --out FILE (as a table, --markdown or --json)`;

function parseArgs(argv) {
  const o = {
    quick: false,
    format: 'table',
    out: null,
    from: null,
    filter: null,
    threads: null,
    device: null,
    peers: true,
    tfjs: true,
    overhead: true,
    manyParams: true,
    progress: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) fail(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--quick':
        o.quick = true;
        break;
      case '--json':
        o.format = 'json';
        break;
      case '--markdown':
        o.format = 'markdown';
        break;
      case '--out':
        o.out = value();
        break;
      case '--from':
        o.from = value();
        break;
      case '--filter': {
        const v = value();
        try {
          o.filter = new RegExp(v, 'i');
        } catch (e) {
          fail(`--filter: not a regular expression: ${e.message}`);
        }
        break;
      }
      case '--threads': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1024)
          fail(`--threads must be an integer from 1 to 1024, got ${JSON.stringify(v)}`);
        o.threads = Number(v);
        break;
      }
      case '--device': {
        const v = value();
        if (v !== 'cpu' && v !== 'cuda') fail(`--device must be cpu or cuda, got ${JSON.stringify(v)}`);
        o.device = v;
        break;
      }
      case '--no-peers':
        o.peers = false;
        break;
      case '--no-tfjs':
        o.tfjs = false;
        break;
      case '--no-overhead':
        o.overhead = false;
        break;
      case '--no-many-params':
        o.manyParams = false;
        break;
      case '--no-progress':
        o.progress = false;
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        fail(`unknown option ${JSON.stringify(argv[i])}`);
    }
  }
  return o;
}

function fail(message) {
  console.error(`bench: ${message}\n${USAGE}`);
  process.exit(2);
}

/** A runtime error found before the run: one line, exit 1. */
function stop(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

// --out must be writable before minutes of measurements are spent on results it would lose
// (the check is the CLI's: dist/cjs/cli/output_path.js, built with the package).
async function checkWritable(file) {
  let check;
  try {
    ({ checkWritable: check } = await import('../dist/cjs/cli/output_path.js'));
  } catch (e) {
    stop(`cannot load the package's JavaScript (run \`npm run build:ts\`): ${e.message}`);
  }
  try {
    check(file, '--out');
  } catch (e) {
    stop(e.message);
  }
}

const opts = parseArgs(process.argv.slice(2));
if (opts.out) await checkWritable(opts.out);
if (opts.from) {
  let saved;
  try {
    saved = JSON.parse(readFileSync(opts.from, 'utf8'));
  } catch (e) {
    fail(`--from: cannot read ${opts.from}: ${e.message}`);
  }
  if (opts.format === 'json') process.stdout.write(`${JSON.stringify(saved, null, 2)}\n`);
  else process.stdout.write(`${renderReport(saved, { markdown: opts.format === 'markdown' })}\n`);
  process.exit(0);
}
// Read once by the addon when it loads: set before importing the package.
if (opts.threads !== null) process.env.FUSED_OPTIM_THREADS = String(opts.threads);
if (opts.device !== null) process.env.FUSED_OPTIM_DEVICE = opts.device;

let fo;
try {
  fo = await import('fused-optim');
} catch (e) {
  console.error(`bench: cannot load fused-optim (run \`npm run build:ts\`, and build the addon): ${e.message}`);
  process.exit(1);
}
try {
  fo.backendInfo(); // --device cuda without a usable GPU, a bad FUSED_OPTIM_DEVICE
} catch (e) {
  stop(`${opts.device ? `--device ${opts.device}: ` : ''}${e.message}`);
}
if (typeof fo.copyBandwidth !== 'function') {
  console.error(
    'bench: this build of fused-optim has no copyBandwidth(); run `npm run build:ts` and rebuild the addon',
  );
  process.exit(1);
}

// Settings per mode. Full: about 1.5 s of timed steps per run (at least 10 steps).
const S = opts.quick
  ? {
      copy: { bytes: 64 * 2 ** 20, iterations: 3 },
      fused: { warmup: 2, minReps: 3, maxReps: 5, targetMs: 30 },
      js: { budget: Infinity, warmup: 1, minReps: 2, maxReps: 3, targetMs: 30 },
      tfjs: { budget: 2 ** 18, warmup: 1, minReps: 2, maxReps: 2, targetMs: 30 },
      host: { counts: [1, 16, 64, 256], calls: 200, samples: 3, warmup: 50, stepCountSteps: 2000, window: 500 },
    }
  : {
      copy: { bytes: 512 * 2 ** 20, iterations: 10 },
      fused: { warmup: 3, minReps: 10, maxReps: 200, targetMs: 1500 },
      js: { budget: Infinity, warmup: 1, minReps: 3, maxReps: 20, targetMs: 2000 },
      tfjs: { budget: 4 * 2 ** 20, warmup: 1, minReps: 3, maxReps: 5, targetMs: 3000 },
      host: {
        counts: [1, 4, 16, 64, 256, 1024, 4096],
        calls: 2000,
        samples: 7,
        warmup: 500,
        stepCountSteps: 20000,
        window: 2000,
      },
    };

// Garbage collection on demand, so each run's optimizer state (freed when the optimizer
// object is collected) is gone before the next run allocates its own.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
async function collect() {
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
}

// --- where and what -----------------------------------------------------------------------
const root = new URL('..', import.meta.url).pathname;
function git(args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
const info = fo.backendInfo();
const device = info.backend;
const cpus = os.cpus();
const results = {
  schema: 1,
  date: new Date().toISOString(),
  quick: opts.quick,
  argv: process.argv.slice(2),
  commit: git(['rev-parse', 'HEAD']) ?? 'unknown',
  dirty: (git(['status', '--porcelain']) ?? '') !== '',
  node: process.version,
  package: JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version,
  machine: {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  },
  backend: info,
  threads: info.threads,
  copyBandwidth: null,
  otherLoad: null,
  cases: [],
  results: [],
  peers: [],
  tfjs: null,
  hostOverhead: null,
  manyParams: [],
  skipped: [],
};

const cases = loadCases(opts.quick ? 'quick' : 'full');
results.cases = cases.map((c) => ({ id: c.id, title: c.title, tensors: c.count, params: c.params }));
const selected = (id) => !opts.filter || opts.filter.test(id);
const runs = [];
for (const c of cases)
  for (const algo of ALGOS)
    for (const dtype of DTYPES) if (selected(`${c.id}/${algo.id}/${dtype.id}`)) runs.push({ c, algo, dtype });
const peerRuns = [];
if (opts.peers) {
  for (const c of cases) {
    for (const algo of ALGOS) {
      if (!runs.some((r) => r.c === c && r.algo === algo && r.dtype.id === 'fp32')) continue;
      peerRuns.push({ peer: 'js', c, algo });
      if (algo.id === 'adamw') peerRuns.push({ peer: 'tfjs', c, algo });
    }
  }
}
const hostAlgos = opts.overhead ? ALGOS.filter((a) => runs.some((r) => r.algo === a)) : [];
const runTfjs = opts.tfjs && (!opts.filter || opts.filter.test('tfjs'));
const manyCounts = opts.manyParams
  ? MANY_PARAMS_COUNTS[opts.quick ? 'quick' : 'full'].filter((n) => selected(manyParamsId(n)))
  : [];
if (opts.filter && runs.length === 0 && manyCounts.length === 0 && !runTfjs) {
  const ids = [...cases.map((c) => c.id), ...MANY_PARAMS_COUNTS[opts.quick ? 'quick' : 'full'].map(manyParamsId)];
  console.error(
    `bench: --filter ${opts.filter.source} matches no run. Runs are named case/optimizer/dtype: cases ${ids.join(', ')}; ` +
      `optimizers ${ALGOS.map((a) => a.id).join(', ')}; dtypes ${DTYPES.map((d) => d.id).join(', ')}; and tfjs`,
  );
  process.exit(2);
}

const progress = createProgress({
  total:
    2 +
    runs.length +
    peerRuns.length +
    (runTfjs ? tfjsProgressCount(opts.quick) : 0) +
    (hostAlgos.length ? hostAlgos.length + 1 : 0) +
    manyCounts.length,
  enabled: opts.progress,
});

// --- load outside this process (Linux): other programs share the memory bus -----------------
function cpuTimes() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return {
      busy: user + nice + system + irq + softirq,
      total: f.slice(0, 8).reduce((a, b) => a + (b || 0), 0),
      steal: steal || 0,
      idle: idle + iowait,
    };
  } catch {
    return null;
  }
}
const load0 = { stat: cpuTimes(), own: process.cpuUsage(), t: nowMs() };

// --- copy bandwidth at the start -------------------------------------------------------------
function measureCopy(label) {
  progress.start(`copy bandwidth (${label})`);
  const r = fo.copyBandwidth({ ...S.copy, device });
  progress.done(`${r.gbps.toFixed(1)} GB/s (${r.method})`);
  return r;
}
const copyStart = measureCopy('start');

// --- the fused optimizers ---------------------------------------------------------------------
// Values: a deterministic pseudo-random pattern in [-0.05, 0.05): no zeros in the grads (the
// moments stay normal numbers), the same for every run. One array serves every tensor
// (subarrays at an offset of their own, so that many small tensors do not all hold the same
// values: branchy scalar code would otherwise be helped by a branch predictor that learns them).
const maxNumel = Math.max(...cases.flatMap((c) => c.tensors.map((t) => t.numel)));
const GRAD_OFFSET = 1021;
const pattern = new Float32Array(Math.max(maxNumel, 2 ** 22) + 2 ** 20);
const offsetOf = (index, numel) => (index * 104729) % (pattern.length - numel - GRAD_OFFSET + 1);
{
  let s = 12345;
  for (let i = 0; i < pattern.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pattern[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
}

function makeOptimizer(algo, params) {
  if (algo.id === 'lion') return new fo.Lion(params, { lr: 1e-4, weightDecay: 1e-5 });
  if (algo.id === 'adamwdl')
    return new fo.AdamWDL(params, { lr: 1e-3, weightDecay: 0.01, layerwiseDecay: 0.9, nLayers: 12 });
  return new fo.AdamW(params, { lr: 1e-3, weightDecay: 0.01 });
}

function runFused({ c, algo, dtype }) {
  const id = `${c.id}/${algo.id}/${dtype.id}`;
  progress.start(id);
  const params = c.tensors.map((t, i) => {
    const o = offsetOf(i, t.numel);
    const p = new fo.Parameter(
      fo.Tensor.from(pattern.subarray(o, o + t.numel), { dtype: dtype.param, shape: t.shape, device }),
      { name: t.name },
    );
    p.grad = fo.Tensor.from(pattern.subarray(o + GRAD_OFFSET, o + GRAD_OFFSET + t.numel), {
      dtype: dtype.grad,
      shape: t.shape,
      device,
    });
    return p;
  });
  let opt = makeOptimizer(algo, params);
  const F = S.fused;
  // Warm-up: the first step creates the state (and the masters), later ones settle the caches.
  for (let i = 0; i < F.warmup; i++) {
    opt.step();
    opt.synchronize();
  }
  const samples = [];
  const timeOne = () => {
    const t0 = nowMs();
    opt.step();
    opt.synchronize(); // CUDA: wait for the kernels; CPU: step() has already finished
    samples.push(nowMs() - t0);
  };
  timeOne();
  const reps = Math.max(F.minReps, Math.min(F.maxReps, Math.ceil(F.targetMs / Math.max(samples[0], 1e-3))));
  while (samples.length < reps) timeOne();
  for (const p of params) {
    p.data.dispose();
    p.grad.dispose();
  }
  opt = null;
  const row = {
    id,
    case: c.id,
    caseTitle: c.title,
    algo: algo.id,
    algoName: algo.name,
    dtype: dtype.id,
    dtypeLabel: dtype.label,
    paramDtype: dtype.param,
    gradDtype: dtype.grad,
    masterWeights: dtype.param !== 'float32',
    tensors: c.count,
    params: c.params,
    bytesPerParam: bytesPerParam(algo, dtype),
    warmup: F.warmup,
    reps: samples.length,
    msMedian: median(samples),
    msMin: Math.min(...samples),
    msP90: quantile(samples, 0.9),
  };
  progress.done(`${row.msMedian.toFixed(2)} ms`);
  return row;
}

for (const r of runs) {
  results.results.push(runFused(r));
  await collect(); // the optimizer's state goes with it
}

// --- peers ------------------------------------------------------------------------------------
for (const pr of peerRuns) {
  const { peer, c, algo } = pr;
  const label = peer === 'js' ? `JS ${algo.name}` : 'tfjs Adam';
  progress.start(`peer ${label} ${c.id}`);
  let impl;
  const budget = peer === 'js' ? S.js.budget : S.tfjs.budget;
  const scaled = scaledTensors(c, budget);
  if (peer === 'tfjs') {
    const tf = await loadTfjs();
    if (tf.unavailable) {
      const why = `tfjs peer: @tensorflow/tfjs could not be loaded (${tf.unavailable.split('\n')[0]})`;
      if (!results.skipped.includes(why)) results.skipped.push(why);
      progress.done('skipped');
      continue;
    }
    impl = createTfjsPeer(tf, scaled.tensors);
  } else {
    impl = createJsPeer(algo.id, scaled.tensors);
  }
  const t = timePeer(impl, peer === 'js' ? S.js : S.tfjs);
  impl.dispose();
  impl = null;
  await collect();
  results.peers.push({
    peer,
    peerName: label,
    note:
      peer === 'tfjs'
        ? "tf.train.adam (Adam: no decoupled weight decay), tfjs's CPU backend, production mode"
        : 'plain JavaScript, Float32Array, one thread',
    comparedWith: `${c.id}/${algo.id}/fp32`,
    case: c.id,
    algo: algo.id,
    params: scaled.params,
    tensors: scaled.tensors.length,
    scaling: scaled.scaling,
    ...t,
    mparamsPerS: scaled.params / t.msMedian / 1e3,
  });
  progress.done(`${t.msMedian.toFixed(1)} ms`);
}

// --- TensorFlow.js: TfjsOptimizer vs tf.train.adam on tfjs models ----------------------------
if (runTfjs) {
  const tf = await loadTfjs();
  let foTfjs;
  try {
    foTfjs = tf.unavailable ? null : await import('fused-optim/tfjs');
  } catch (e) {
    tf.unavailable = e.message;
  }
  if (tf.unavailable || !foTfjs) {
    results.skipped.push(
      `tfjs case: @tensorflow/tfjs or fused-optim/tfjs could not be loaded (${String(tf.unavailable).split('\n')[0]})`,
    );
    for (let i = 0; i < tfjsProgressCount(opts.quick); i++) progress.done('skipped');
  } else {
    results.tfjs = await runTfjsBench({
      fo,
      foTfjs,
      tf,
      quick: opts.quick,
      device,
      progress,
    });
    for (const b of results.tfjs.backends)
      if (!b.available) results.skipped.push(`tfjs case, backend ${b.name}: ${b.reason}`);
  }
  await collect();
}

// --- host overhead ----------------------------------------------------------------------------
if (hostAlgos.length) {
  results.hostOverhead = measureHostOverhead(fo, { algos: hostAlgos, device, ...S.host, progress });
}

// --- many tiny params ---------------------------------------------------------------------------
if (manyCounts.length)
  results.manyParams = await measureManyParams(fo, { counts: manyCounts, device, progress, collect });

// --- copy bandwidth at the end, and the derived figures ---------------------------------------
const copyEnd = measureCopy('end');
progress.finish();
const pick = (r) => ({
  gbps: r.gbps,
  medianGbps: r.medianGbps,
  method: r.method,
  methods: r.methods,
  bytes: r.bytes,
  iterations: r.iterations,
  threads: r.threads,
});
const reference = Math.max(copyStart.gbps, copyEnd.gbps);
results.copyBandwidth = {
  device,
  start: pick(copyStart),
  end: pick(copyEnd),
  referenceGBps: reference,
  note: 'GB/s = 1e9 bytes/s, counting every byte read and every byte written (a copy of N bytes counts 2N). Reference: the higher of the two measurements.',
};

const load1 = { stat: cpuTimes(), own: process.cpuUsage(load0.own), t: nowMs() };
if (load0.stat && load1.stat) {
  const elapsed = (load1.t - load0.t) / 1e3;
  const totalTicks = load1.stat.total - load0.stat.total;
  const hz = totalTicks / (elapsed * results.machine.cores); // ticks per second per core
  const busy = (load1.stat.busy - load0.stat.busy) / hz;
  const own = (load1.own.user + load1.own.system) / 1e6;
  results.otherLoad = {
    seconds: elapsed,
    ownCores: own / elapsed,
    otherCores: Math.max(0, busy - own) / elapsed,
    stealCores: (load1.stat.steal - load0.stat.steal) / hz / elapsed,
  };
}

for (const row of results.results) {
  const bytes = row.bytesPerParam * row.params;
  row.mparamsPerS = row.params / row.msMedian / 1e3;
  row.gbps = bytes / (row.msMedian / 1e3) / 1e9;
  row.fractionOfCopy = row.gbps / reference;
  row.predictedMs = (bytes / (reference * 1e9)) * 1e3;
  const target = targetFor(row.case, device);
  row.target = target;
  row.targetMet = target === null ? null : row.fractionOfCopy >= target;
  const js = results.peers.find((p) => p.peer === 'js' && p.case === row.case && p.algo === row.algo);
  const tf = results.peers.find((p) => p.peer === 'tfjs' && p.case === row.case);
  row.vsJs = row.dtype === 'fp32' && js ? row.mparamsPerS / js.mparamsPerS : null;
  row.vsTfjs = row.dtype === 'fp32' && row.algo === 'adamw' && tf ? row.mparamsPerS / tf.mparamsPerS : null;
}
for (const t of results.tfjs?.runs ?? []) t.fractionOfCopy = t.gbps / reference;
for (const p of results.peers) {
  const fused = results.results.find((r) => r.id === p.comparedWith);
  p.fusedMparamsPerS = fused?.mparamsPerS ?? null;
  p.ratio = fused ? fused.mparamsPerS / p.mparamsPerS : null;
}

// The report first: a failing --out write (checked at the start, but a disk can fill) must
// not lose the results.
if (opts.format === 'json') process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
else process.stdout.write(`${renderReport(results, { markdown: opts.format === 'markdown' })}\n`);
if (opts.out) {
  try {
    writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
  } catch (e) {
    stop(`--out ${opts.out}: the results could not be written (${e.message}); they are printed above`);
  }
}
