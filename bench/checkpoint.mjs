#!/usr/bin/env node
// The checkpoint benchmark (npm run bench:checkpoint): saveCheckpoint, loadCheckpoint and a
// background save of an AdamW model, against the disk measured in the same run:
//   - "write": the same number of bytes written in 16 MiB blocks, then fsync (what a save
//     cannot beat), and "read": that file read back in 16 MiB blocks (from the page cache,
//     as a just-saved checkpoint is);
//   - for each operation: bytes, seconds, GB/s, the fraction of the disk figure (save: of
//     write; load: of the slower of write and read), peak RSS over the RSS before it (Linux
//     VmHWM, reset through /proc/self/clear_refs), and the longest event-loop gap (a 1 ms
//     timer's longest delay);
//   - models: "large", 200M fp32 params in 8 tensors of 25M, and "many", 1M params in 100k
//     tensors of 10 (both after one step, so the state exists).
//
//   node bench/checkpoint.mjs [--scale F] [--only large|many] [--dir DIR] [--staging BYTES]
//                             [--repeat N] [--json] [--markdown]
//
// --scale 0.1 divides every tensor's size (large) and the tensor count (many) by 10, for
// machines short of memory (the large model needs about 3.3 GB: params, state, one grad).
// Needs the TypeScript build (npm run build:ts) and the addon. Timings are reported, not judged.
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const USAGE = `usage: node bench/checkpoint.mjs [options]
  --scale F        scale the models down (0 < F <= 1; default 1)
  --only NAME      run one model: large or many
  --dir DIR        where to write (default: a temporary folder under the OS temp dir)
  --staging BYTES  stagingBytes for saves and loads (default: the library's, 64 MiB)
  --repeat N       runs of each operation; the best is reported (default 1)
  --json           print the results as JSON
  --markdown       print the table as Markdown`;

function parseArgs(argv) {
  const o = { scale: 1, only: null, dir: null, staging: undefined, repeat: 1, format: 'table' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i] ?? fail(`${flag} needs a value`);
    if (flag === '--scale') o.scale = Number(value());
    else if (flag === '--only') o.only = value();
    else if (flag === '--dir') o.dir = value();
    else if (flag === '--staging') o.staging = Number(value());
    else if (flag === '--repeat') o.repeat = Number(value());
    else if (flag === '--json') o.format = 'json';
    else if (flag === '--markdown') o.format = 'markdown';
    else if (flag === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else fail(`unknown option ${flag}\n${USAGE}`);
  }
  if (!(o.scale > 0 && o.scale <= 1)) fail('--scale must be in (0, 1]');
  if (o.only !== null && !['large', 'many'].includes(o.only)) fail('--only must be large or many');
  if (!Number.isInteger(o.repeat) || o.repeat < 1) fail('--repeat must be a positive integer');
  return o;
}

function fail(message) {
  console.error(`bench/checkpoint.mjs: ${message}`);
  process.exit(2);
}

const GB = 1e9;
const MiB = 2 ** 20;

// ---------------------------------------------------------------------------------------
// Measuring: peak RSS (Linux) and event-loop gaps

function status(field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

function resetPeakRss() {
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current RSS
  } catch {
    // not Linux: the peak is then from the start of the process
  }
}

/** Runs `op` and reports seconds, peak RSS over the RSS before, and the longest event-loop gap. */
async function measure(op) {
  globalThis.gc?.();
  const rssBefore = status('VmRSS');
  resetPeakRss();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const t0 = performance.now();
  const result = await op();
  const seconds = (performance.now() - t0) / 1000;
  loop.disable();
  return {
    seconds,
    peakRssOverBaseline: status('VmHWM') - rssBefore,
    longestGapMs: loop.max / 1e6,
    result,
  };
}

// ---------------------------------------------------------------------------------------
// The disk: a plain large-block write with fsync, and a plain read, of `bytes` bytes

async function measureDisk(dir, bytes) {
  const file = path.join(dir, 'disk-probe.bin');
  const block = Buffer.alloc(16 * MiB, 0x5a);
  const write = await measure(async () => {
    const fd = openSync(file, 'w');
    for (let done = 0; done < bytes;) {
      const n = Math.min(block.length, bytes - done);
      done += writeSync(fd, block, 0, n);
    }
    fsyncSync(fd);
    closeSync(fd);
  });
  const read = await measure(async () => {
    const fd = openSync(file, 'r');
    for (let done = 0; ;) {
      const n = readSync(fd, block, 0, block.length, done);
      if (n === 0) break;
      done += n;
    }
    closeSync(fd);
  });
  rmSync(file, { force: true });
  return { writeGBps: bytes / write.seconds / GB, readGBps: bytes / read.seconds / GB };
}

// ---------------------------------------------------------------------------------------
// Models

function buildModel(fo, kind, scale) {
  const shapes =
    kind === 'large'
      ? Array.from({ length: 8 }, () => Math.max(1, Math.round(25_000_000 * scale)))
      : Array.from({ length: Math.max(1, Math.round(100_000 * scale)) }, () => 10);
  const params = shapes.map((n, i) => new fo.Parameter(fo.Tensor.zeros([n]), { name: `layer${i}.weight` }));
  for (const p of params) p.data.copyFrom(new Float32Array(p.data.numel).fill(0.5));
  const opt = new fo.AdamW(params, { lr: 1e-3 });
  // One step, so the state exists; the grads are freed after it.
  const grads = params.map((p) => fo.Tensor.zeros(p.data.shape));
  params.forEach((p, i) => (p.grad = grads[i]));
  opt.step();
  params.forEach((p) => (p.grad = null));
  grads.forEach((g) => g.dispose());
  return { params, opt, numel: shapes.reduce((a, b) => a + b, 0), tensors: shapes.length };
}

/** The longest event-loop gap while nothing runs (what the machine itself causes), over `ms`. */
async function idleGap(ms) {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  await new Promise((r) => setTimeout(r, ms));
  loop.disable();
  return loop.max / 1e6;
}

async function runModel(fo, kind, o, dir) {
  const built = performance.now();
  const m = buildModel(fo, kind, o.scale);
  const buildSeconds = (performance.now() - built) / 1000;
  const idleGapMs = await idleGap(3000);
  const file = path.join(dir, `${kind}.safetensors`);
  const io = o.staging === undefined ? {} : { stagingBytes: o.staging };
  const best = async (op) => {
    let b;
    for (let r = 0; r < o.repeat; r++) {
      const x = await measure(op);
      if (!b || x.seconds < b.seconds) b = x;
    }
    return b;
  };
  const save = await best(() => fo.saveCheckpoint(file, { params: m.params, optimizer: m.opt }, io));
  const bytes = statSync(file).size;
  const load = await best(() => fo.loadCheckpoint(file, { params: m.params, optimizer: m.opt }, io));
  // Background: the time until it returns (the snapshot), and until the file is in place.
  let returned;
  const background = await best(async () => {
    const t0 = performance.now();
    const { written } = await fo.saveCheckpoint(
      file,
      { params: m.params, optimizer: m.opt },
      { ...io, background: true },
    );
    returned = (performance.now() - t0) / 1000;
    await written;
  });
  background.returnedAfterSeconds = returned;
  const disk = await measureDisk(dir, bytes);
  rmSync(file, { force: true });
  for (const p of m.params) p.data.dispose();
  return {
    model: kind,
    params: m.numel,
    tensors: m.tensors,
    bytes,
    disk,
    idleGapMs,
    buildSeconds,
    save,
    load,
    background,
  };
}

function rows(results) {
  const out = [];
  for (const r of results) {
    const gbps = (s) => r.bytes / s / GB;
    const line = (op, x, diskGBps) => ({
      model: r.model,
      op,
      bytes: r.bytes,
      seconds: x.seconds,
      GBps: gbps(x.seconds),
      ofDisk: gbps(x.seconds) / diskGBps,
      peakRssMiB: x.peakRssOverBaseline / MiB,
      gapMs: x.longestGapMs,
      returnedS: x.returnedAfterSeconds,
    });
    out.push(line('save', r.save, r.disk.writeGBps));
    out.push(line('load', r.load, Math.min(r.disk.writeGBps, r.disk.readGBps)));
    out.push(line('background save', r.background, r.disk.writeGBps));
  }
  return out;
}

function render(results, markdown) {
  const header = [
    'model',
    'operation',
    'bytes',
    's',
    'GB/s',
    'of disk',
    'peak RSS +MiB',
    'longest gap ms',
    'returned after s',
  ];
  const body = rows(results).map((x) => [
    x.model,
    x.op,
    String(x.bytes),
    x.seconds.toFixed(2),
    x.GBps.toFixed(3),
    `${Math.round(100 * x.ofDisk)}%`,
    x.peakRssMiB.toFixed(0),
    x.gapMs.toFixed(1),
    x.returnedS === undefined ? '' : x.returnedS.toFixed(2),
  ]);
  const disks = results.map(
    (r) =>
      `${r.model}: ${r.params} params in ${r.tensors} tensors (built in ${r.buildSeconds.toFixed(1)} s); disk write ` +
      `${r.disk.writeGBps.toFixed(3)} GB/s (16 MiB blocks + fsync), read ${r.disk.readGBps.toFixed(3)} GB/s; ` +
      `longest event-loop gap while idle ${r.idleGapMs.toFixed(1)} ms`,
  );
  if (markdown) {
    const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
    for (const b of body) lines.push(`| ${b.join(' | ')} |`);
    return `${lines.join('\n')}\n\n${disks.map((d) => `- ${d}`).join('\n')}`;
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cells) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [fmt(header), ...body.map(fmt), '', ...disks].join('\n');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const fo = await import('fused-optim');
  const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'fused-optim-bench-ckpt-'));
  const results = [];
  try {
    for (const kind of ['large', 'many']) {
      if (o.only && o.only !== kind) continue;
      process.stderr.write(`checkpoint bench: ${kind} model (scale ${o.scale})...\n`);
      results.push(await runModel(fo, kind, o, dir));
    }
  } finally {
    if (!o.dir) rmSync(dir, { recursive: true, force: true });
  }
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}`,
    memoryGiB: os.totalmem() / 2 ** 30,
    scale: o.scale,
    stagingBytes: o.staging ?? 64 * MiB,
    loadAverage: os.loadavg(),
  };
  if (o.format === 'json') console.log(JSON.stringify({ ...meta, results, rows: rows(results) }, null, 2));
  else
    console.log(
      `${render(results, o.format === 'markdown')}\n\n${meta.date}, node ${meta.node}, ${meta.cpus}, ` +
        `${meta.memoryGiB.toFixed(0)} GiB, load average ${meta.loadAverage.map((x) => x.toFixed(1)).join(' ')}`,
    );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
