// The state-dtype benchmark (part of npm run bench): each optimizer with fp32, bf16 and 8-bit
// state on one big fp32 tensor (and 64 medium ones), on the CPU (or --device cuda), reporting bytes per
// param (the model below), achieved GB/s, the fraction of the copy bandwidth measured in the
// same run, and the speed-up over fp32 state measured in the same run.
//
// Bytes per param per step, fp32 params and grads: param r+w 8 + grad 4 + per state buffer
// read + write of its element: fp32 8, bf16 4, 8-bit 2 plus 8 bytes of absmax per block
// (2 + 8/256). AdamW / AdamWDL (2 buffers): 28 / 20 / 16.06; Lion and SGD with momentum
// (1 buffer): 20 / 16 / 14.03.
//
// Usage: node bench/state_dtypes.mjs [--quick] [--json] [--device cpu|cuda]
import { createRequire } from 'node:module';
import { median, nowMs } from './stats.mjs';

const require = createRequire(import.meta.url);
const fo = require('../dist/cjs/index.js');

const args = process.argv.slice(2);
let device = 'cpu';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--device' && (args[i + 1] === 'cpu' || args[i + 1] === 'cuda')) device = args[++i];
  else if (args[i] !== '--quick' && args[i] !== '--json') {
    console.error(`state_dtypes.mjs: unknown argument ${args[i]} (use --quick, --json, --device cpu|cuda)`);
    process.exit(2);
  }
}
const quick = args.includes('--quick');
const json = args.includes('--json');

const CASES = quick
  ? [{ id: 'one-big', count: 1, numel: 1 << 20 }]
  : [
      { id: 'one-big', count: 1, numel: 1 << 25 },
      { id: 'medium-64', count: 64, numel: 1 << 19 },
    ];
const OPTIMIZERS = [
  { id: 'AdamW', buffers: 2, make: (p, o) => new fo.AdamW(p, { lr: 1e-3, weightDecay: 0.01, ...o }) },
  { id: 'AdamWDL', buffers: 2, make: (p, o) => new fo.AdamWDL(p, { lr: 1e-3, weightDecay: 0.01, ...o }) },
  { id: 'Lion', buffers: 1, make: (p, o) => new fo.Lion(p, { lr: 1e-4, weightDecay: 1e-4, ...o }) },
  { id: 'SGD', buffers: 1, make: (p, o) => new fo.SGD(p, { lr: 1e-2, momentum: 0.9, ...o }) },
];
const STATE_DTYPES = ['float32', 'bfloat16', 'uint8'];
const STATE_BYTES = { float32: 8, bfloat16: 4, uint8: 2 + 8 / 256 };
const bytesPerParam = (buffers, dtype) => 12 + buffers * STATE_BYTES[dtype];

// CUDA steps are queued: each timed step ends with a synchronize (opt.synchronize()).
function timeSteps(opt, seconds) {
  for (let i = 0; i < 3; i++) opt.step(); // warm-up: state created, pages touched
  opt.synchronize?.();
  const times = [];
  const end = nowMs() + seconds * 1000;
  while (times.length < 5 || (nowMs() < end && times.length < 200)) {
    const t0 = nowMs();
    opt.step();
    opt.synchronize?.();
    times.push(nowMs() - t0);
  }
  return median(times);
}

// The copy bandwidth at the start and at the end; the higher is the yardstick (as bench/run.mjs).
const measureCopy = () => fo.copyBandwidth({ bytes: quick ? 64 * 2 ** 20 : 512 * 2 ** 20, device }).gbps;
const copyStart = measureCopy();
const rows = [];
for (const c of CASES) {
  const params = Array.from({ length: c.count }, (_, i) => {
    const p = new fo.Parameter(fo.Tensor.from(new Float32Array(c.numel).fill(0.5), { device }), {
      name: `${c.id}.t${i}`,
    });
    p.grad = fo.Tensor.from(
      new Float32Array(c.numel).map((_, j) => Math.sin(j) * 1e-2),
      { device },
    );
    return p;
  });
  const total = c.count * c.numel;
  for (const o of OPTIMIZERS) {
    let fp32Ms = 0;
    for (const stateDtype of STATE_DTYPES) {
      const opt = o.make(params, { stateDtype });
      const ms = timeSteps(opt, quick ? 0.3 : 3);
      const bytes = bytesPerParam(o.buffers, stateDtype);
      if (stateDtype === 'float32') fp32Ms = ms;
      const gbs = (bytes * total) / (ms * 1e6);
      rows.push({
        case: c.id,
        optimizer: o.id,
        stateDtype,
        params: total,
        ms,
        mparamsPerS: total / (ms * 1e3),
        bytesPerParam: bytes,
        stateBytesPerParam: opt.stateBytes() / total,
        gbPerS: gbs,
        fractionOfCopy: 0, // set once the end's copy bandwidth is known
        speedupOverFp32: fp32Ms / ms,
      });
      opt.dispose();
    }
  }
}

const copyGBs = Math.max(copyStart, measureCopy());
for (const r of rows) r.fractionOfCopy = r.gbPerS / copyGBs;
const info = fo.backendInfo ? fo.backendInfo() : {};
if (json) {
  console.log(JSON.stringify({ quick, device, copyGBs, threads: info.threads, rows }, null, 1));
} else {
  const where = device === 'cuda' ? `CUDA, ${info.device ?? '?'}` : `CPU, ${info.threads ?? '?'} threads`;
  console.log(`state dtypes (${where}); copy bandwidth ${copyGBs.toFixed(1)} GB/s`);
  console.log(
    '| case | optimizer | state | ms/step | Mparams/s | bytes/param | state B/param | GB/s | of copy | vs fp32 state |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.case} | ${r.optimizer} | ${r.stateDtype} | ${r.ms.toFixed(2)} | ${r.mparamsPerS.toFixed(0)} | ${r.bytesPerParam.toFixed(2)} | ${r.stateBytesPerParam.toFixed(3)} | ${r.gbPerS.toFixed(1)} | ${(100 * r.fractionOfCopy).toFixed(0)}% | ${r.speedupOverFp32.toFixed(2)}x |`,
    );
}
