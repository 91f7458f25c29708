#!/usr/bin/env node
// The fused-optim/distributed benchmark, run in every rank by the MPI launcher:
//
//   mpirun -np 2 node bench/distributed.mjs [--quick] [--json | --markdown] [--reps N]
//   (as root, Open MPI also needs --allow-run-as-root; on a machine with fewer cores than
//   ranks, --oversubscribe)
//
// 1. All-reduce bandwidth of a model's gradients (the BERT-base parameter list of
//    bench/cases.json, 109.5M fp32 grads in 199 tensors; --quick: the small encoder) through
//    allReduceGrads, at several bucket sizes and in rank order, against MPI's own all-reduce
//    of one buffer of the same size in the same run (MPI_Allreduce through the module: the
//    floor the library's packing and bucketing add to). algbw = buffer bytes / time; busbw =
//    algbw x 2 (N - 1) / N, the bytes each rank's links carry in a ring (nccl-tests' terms).
//    Packing and unpacking (host copies in and out of the buckets) are timed on their own.
// 2. ZeRO-1 against data parallelism for the same model with AdamW (fp32): ms per step, of it
//    the grad all-reduce, the optimizer step and ZeRO's param broadcast, and each rank's
//    optimizer state in bytes.
//
// Rank 0 prints the results (a table, --json or --markdown); every figure is a median over
// --reps repetitions after one warm-up. Timings are reported, never asserted.
import os from 'node:os';
import { createRequire } from 'node:module';
import { loadCases } from './cases.mjs';
import { median } from './stats.mjs';

const require = createRequire(import.meta.url);
const lib = require('../dist/cjs/index.js');
const dist = require('../dist/cjs/distributed/index.js');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const format = args.includes('--json') ? 'json' : args.includes('--markdown') ? 'markdown' : 'table';
const repsAt = args.indexOf('--reps');
const REPS = repsAt >= 0 ? Number(args[repsAt + 1]) : quick ? 2 : 5;
for (let i = 0; i < args.length; i++) {
  if (['--quick', '--json', '--markdown'].includes(args[i])) continue;
  if (args[i] === '--reps' && Number.isInteger(Number(args[i + 1])) && Number(args[i + 1]) > 0) {
    i++;
    continue;
  }
  console.error(
    `distributed bench: unknown option ${args[i]}\nusage: mpirun -np N node bench/distributed.mjs [--quick] [--json | --markdown] [--reps N]`,
  );
  process.exit(2);
}

const MiB = 1024 * 1024;
const now = () => performance.now();

async function timed(group, fn) {
  await group.barrierAsync();
  const t0 = now();
  await fn();
  const ms = now() - t0;
  // The slowest rank's time is the collective's.
  const v = Float64Array.of(ms);
  await group.allReduceAsync(v, 'max');
  return v[0];
}

function modelTensors() {
  return loadCases(quick ? 'quick' : 'full').find((c) => c.id === 'transformer').tensors;
}

function makeParams(tensors, withGrads) {
  return tensors.map((t, i) => {
    const v = new Float32Array(t.numel);
    for (let k = 0; k < v.length; k += 97) v[k] = Math.sin(i + k);
    const p = new lib.Parameter(lib.Tensor.from(v, { shape: t.shape }), { name: t.name });
    if (withGrads)
      p.grad = lib.Tensor.from(
        v.map((x) => x * 0.01),
        { shape: t.shape },
      );
    return p;
  });
}

function dispose(params) {
  for (const p of params) {
    p.data.dispose();
    p.grad?.dispose();
  }
}

function bandwidth(bytes, ms, world) {
  const algbw = bytes / (ms / 1e3) / 1e9;
  return { ms, algbw, busbw: (algbw * 2 * (world - 1)) / world };
}

// Variants timed round-robin (one repetition of each in turn), so that a change in the
// machine's load during the run affects them alike.
async function roundRobin(group, variants) {
  for (const v of variants) await v.fn(); // warm-up: buckets, page faults
  const times = variants.map(() => []);
  for (let r = 0; r < REPS; r++) for (const [i, v] of variants.entries()) times[i].push(await timed(group, v.fn));
  return variants.map((v, i) => ({ what: v.what, ms: median(times[i]), all: times[i] }));
}

async function allReduceBench(group) {
  const tensors = modelTensors();
  const numel = tensors.reduce((n, t) => n + t.numel, 0);
  const bytes = numel * 4;
  const world = group.worldSize;
  const flat = new Float32Array(group.allocateHost(bytes)).fill(1);
  const params = makeParams(tensors, true);
  const host = new Float32Array(numel);
  const tiny = Float64Array.of(1, 2, 3, 4);
  const variants = [
    // MPI's own: one buffer of the model's size, in place (MPI_Allreduce through the module).
    { what: "MPI's all-reduce of one buffer (sync)", fn: async () => group.allReduce(flat, 'sum') },
    { what: "MPI's all-reduce of one buffer (async)", fn: () => group.allReduceAsync(flat, 'sum') },
    {
      what: 'rank-order all-reduce of one buffer (ordered: true)',
      fn: () => group.allReduceAsync(flat, { op: 'sum', ordered: true }),
    },
    ...(quick ? [MiB] : [MiB, 25 * MiB, 100 * MiB]).map((bucketBytes) => ({
      what: `allReduceGrads, ${bucketBytes / MiB} MiB buckets (avg)`,
      fn: () => dist.allReduceGrads(params, { group, bucketBytes }),
    })),
    {
      what: 'allReduceGrads, 25 MiB buckets, ordered: true',
      fn: () => dist.allReduceGrads(params, { group, bucketBytes: 25 * MiB, ordered: true }),
    },
  ];
  const rows = (await roundRobin(group, variants)).map((r) => ({ ...r, ...bandwidth(bytes, r.ms, world) }));
  // The host copies alone: the grads into one buffer and back (what packing costs per call),
  // and a small collective's round trip (the layout check each allReduceGrads makes).
  const [pack, unpack, small] = await roundRobin(group, [
    {
      what: 'pack',
      fn: async () => {
        let at = 0;
        for (const p of params) {
          p.grad.toFloat32Array(host.subarray(at, at + p.grad.numel));
          at += p.grad.numel;
        }
      },
    },
    {
      what: 'unpack',
      fn: async () => {
        let at = 0;
        for (const p of params) {
          p.grad.copyFrom(host.subarray(at, at + p.grad.numel));
          at += p.grad.numel;
        }
      },
    },
    {
      what: 'small',
      fn: async () => {
        for (let i = 0; i < 100; i++) await group.allReduceAsync(tiny, 'max');
      },
    },
  ]);
  dispose(params);
  return {
    numel,
    bytes,
    tensors: tensors.length,
    rows,
    packMs: pack.ms,
    unpackMs: unpack.ms,
    smallUs: (small.ms / 100) * 1e3,
  };
}

function stateBytes(sd) {
  let n = 0;
  for (const s of Object.values(sd.state))
    for (const v of Object.values(s)) if (ArrayBuffer.isView(v)) n += v.byteLength;
  return n;
}

async function zeroBench(group) {
  const tensors = modelTensors();
  const out = {};
  for (const kind of ['DDP', 'ZeRO-1']) {
    const params = makeParams(tensors, true);
    const opt =
      kind === 'DDP'
        ? new lib.AdamW(params, { lr: 1e-4 })
        : new dist.ZeroRedundancyOptimizer(params, (shard) => new lib.AdamW(shard, { lr: 1e-4 }), { group });
    const local = kind === 'DDP' ? opt : opt.localOptimizer;
    const parts = { allReduce: [], step: [], total: [] };
    const steps = REPS + 1;
    for (let s = 0; s < steps; s++) {
      await group.barrierAsync();
      const t0 = now();
      await dist.allReduceGrads(params, { group });
      const t1 = now();
      await opt.stepAsync();
      const t2 = now();
      if (s === 0) continue; // warm-up: state creation
      parts.allReduce.push(t1 - t0);
      parts.step.push(t2 - t1);
      parts.total.push(t2 - t0);
    }
    // ZeRO's step = its shard's update + the broadcasts: time the shard's update alone.
    let update = median(parts.step);
    if (kind === 'ZeRO-1' && local) {
      const u = [];
      for (let s = 0; s < REPS; s++) {
        const t0 = now();
        await local.stepAsync();
        u.push(now() - t0);
      }
      update = median(u);
    }
    const mine = local ? stateBytes(local.stateDict()) : 0;
    const all = Float64Array.of(mine, mine, -mine);
    await group.allReduceAsync(all.subarray(0, 1), 'sum');
    const mx = all.subarray(1, 2);
    await group.allReduceAsync(mx, 'max');
    const medians = Float64Array.of(median(parts.total), median(parts.allReduce), median(parts.step), update);
    await group.allReduceAsync(medians, 'max');
    out[kind] = {
      stepMs: medians[0],
      allReduceMs: medians[1],
      optimizerStepMs: medians[2],
      updateMs: medians[3],
      syncMs: kind === 'ZeRO-1' ? medians[2] - medians[3] : 0,
      stateBytesThisRank: mine,
      stateBytesMaxRank: mx[0],
      stateBytesAllRanks: all[0],
    };
    dispose(params);
  }
  return out;
}

function table(r) {
  const lines = [];
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
  lines.push(
    `fused-optim/distributed benchmark: ${r.world} ranks (${r.library}), ${r.hostname}, ${r.cores} cores, load ${r.load.map((x) => x.toFixed(1)).join(' ')}, FUSED_OPTIM_THREADS=${r.threads}`,
  );
  const a = r.allReduce;
  lines.push(
    ``,
    `All-reduce of ${a.tensors} grads, ${a.numel.toLocaleString('en-US')} fp32 = ${(a.bytes / 1e6).toFixed(0)} MB`,
  );
  lines.push(
    '| what | ms (median) | runs ms | algbw GB/s | busbw GB/s | of MPI (sync) |',
    '|---|---:|---|---:|---:|---:|',
  );
  const ref = a.rows[0].algbw;
  for (const row of a.rows)
    lines.push(
      `| ${row.what} | ${f(row.ms, 1)} | ${row.all.map((x) => x.toFixed(0)).join(' ')} | ${f(row.algbw)} | ${f(row.busbw)} | ${f((row.algbw / ref) * 100, 0)}% |`,
    );
  lines.push(
    ``,
    `Host copies of all grads: pack ${f(a.packMs, 1)} ms (${f(a.bytes / a.packMs / 1e6)} GB/s), unpack ${f(a.unpackMs, 1)} ms (${f(a.bytes / a.unpackMs / 1e6)} GB/s); a 4-number all-reduce round trip: ${f(a.smallUs, 0)} us`,
  );
  const z = r.zero;
  lines.push(``, `ZeRO-1 vs DDP, AdamW fp32 over the same model, ${r.world} ranks (ms per step, slowest rank)`);
  lines.push(
    '| | step ms | grad all-reduce ms | optimizer step ms | of it: update | of it: param broadcast | optimizer state, this rank | largest rank | all ranks |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const [k, v] of Object.entries(z))
    lines.push(
      `| ${k} | ${f(v.stepMs, 1)} | ${f(v.allReduceMs, 1)} | ${f(v.optimizerStepMs, 1)} | ${f(v.updateMs, 1)} | ${f(v.syncMs, 1)} | ${(v.stateBytesThisRank / 1e6).toFixed(0)} MB | ${(v.stateBytesMaxRank / 1e6).toFixed(0)} MB | ${(v.stateBytesAllRanks / 1e6).toFixed(0)} MB |`,
    );
  return lines.join('\n');
}

const group = await dist.init({ timeoutSeconds: 600 });
const result = {
  world: group.worldSize,
  library: group.info.library.split(',')[0],
  hostname: os.hostname(),
  cores: os.availableParallelism(),
  threads: process.env.FUSED_OPTIM_THREADS ?? String(lib.backendInfo().threads),
  quick,
  reps: REPS,
  load: os.loadavg(),
};
result.allReduce = await allReduceBench(group);
result.zero = await zeroBench(group);
result.loadAfter = os.loadavg();
if (group.rank === 0) {
  if (format === 'json') console.log(JSON.stringify(result, null, 1));
  else console.log(table(result));
}
group.destroy();
