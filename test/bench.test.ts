// The benchmark suite as a smoke test: `node bench/run.mjs --quick --json` runs every case,
// optimizer and dtype, and reports finite, positive figures for each. No timing is asserted
// (the numbers depend on the machine and on what else runs on it). Also copyBandwidth()'s
// validation, and one small measurement.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyBandwidth } from '../src/index';
import { native } from '../src/native';

const root = join(__dirname, '..');

const CASES = ['one-big', 'medium-64', 'small-4096', 'transformer'];
const ALGOS = ['adamw', 'adamwdl', 'lion'];
// docs/design.md section 6: bytes per param per step, as the bench reports them.
const BYTES: Record<string, Record<string, number>> = {
  adamw: { fp32: 28, fp16: 28, bf16: 28, 'fp16-g32': 30, 'bf16-g32': 30 },
  adamwdl: { fp32: 28, fp16: 28, bf16: 28, 'fp16-g32': 30, 'bf16-g32': 30 },
  lion: { fp32: 20, fp16: 20, bf16: 20, 'fp16-g32': 22, 'bf16-g32': 22 },
};

function expectPositive(value: unknown, what: string): void {
  expect(typeof value, what).toBe('number');
  expect(Number.isFinite(value as number) && (value as number) > 0, `${what} = ${String(value)}`).toBe(true);
}

// Timings of the CUDA host emulator say nothing about a GPU and take minutes: not there.
const emulated = native().nativeInfo().cudaEmulated;
if (emulated) console.warn('benchmark suite test skipped: this build runs CUDA on the host emulator');

describe.skipIf(emulated)('benchmark suite (bench/run.mjs --quick --json)', () => {
  it('runs every case and reports finite positive numbers', () => {
    const r = spawnSync(process.execPath, ['bench/run.mjs', '--quick', '--json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 300_000,
      maxBuffer: 64 * 2 ** 20,
    });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const out = JSON.parse(r.stdout);

    expect(out.quick).toBe(true);
    expect(out.cases.map((c: { id: string }) => c.id)).toEqual(CASES);
    for (const c of out.cases) {
      expectPositive(c.params, `${c.id} params`);
      expectPositive(c.tensors, `${c.id} tensors`);
    }
    expect(out.cases.find((c: { id: string }) => c.id === 'small-4096').tensors).toBe(4096);
    expect(out.cases.find((c: { id: string }) => c.id === 'medium-64').tensors).toBe(64);
    expect(out.cases.find((c: { id: string }) => c.id === 'transformer').tensors).toBe(199);

    expectPositive(out.copyBandwidth.referenceGBps, 'copy bandwidth');
    expectPositive(out.copyBandwidth.start.gbps, 'copy bandwidth at the start');
    expectPositive(out.copyBandwidth.end.gbps, 'copy bandwidth at the end');

    const ids = out.results.map((x: { id: string }) => x.id).sort();
    const expected = CASES.flatMap((c) =>
      ALGOS.flatMap((a) => Object.keys(BYTES[a]).map((d) => `${c}/${a}/${d}`)),
    ).sort();
    expect(ids).toEqual(expected);
    for (const x of out.results) {
      for (const key of [
        'msMedian',
        'msMin',
        'mparamsPerS',
        'gbps',
        'fractionOfCopy',
        'predictedMs',
        'params',
        'reps',
      ]) {
        expectPositive(x[key], `${x.id} ${key}`);
      }
      expect(x.bytesPerParam, x.id).toBe(BYTES[x.algo][x.dtype]);
      if (x.dtype === 'fp32') expectPositive(x.vsJs, `${x.id} vsJs`);
    }

    // Peers: plain JS for every optimizer and case; tfjs's Adam for every case.
    for (const c of CASES) {
      for (const a of ALGOS) {
        const js = out.peers.find(
          (p: { peer: string; case: string; algo: string }) => p.peer === 'js' && p.case === c && p.algo === a,
        );
        expect(js, `js peer ${c}/${a}`).toBeDefined();
        for (const key of ['msMedian', 'mparamsPerS', 'ratio', 'params'])
          expectPositive(js[key], `js ${c}/${a} ${key}`);
      }
      const tf = out.peers.find((p: { peer: string; case: string }) => p.peer === 'tfjs' && p.case === c);
      expect(tf, `tfjs peer ${c}`).toBeDefined();
      for (const key of ['msMedian', 'mparamsPerS', 'ratio', 'params']) expectPositive(tf[key], `tfjs ${c} ${key}`);
    }

    // TensorFlow.js: TfjsOptimizer and tf.train.adam on both models, on each backend installed
    // here (cpu, wasm); tfjs-node is not installed, and is reported so.
    expect(out.tfjs.backends.map((b: { name: string; available: boolean }) => [b.name, b.available])).toEqual([
      ['cpu', true],
      ['wasm', true],
      ['tensorflow', false],
    ]);
    expect(out.tfjs.runs.map((r: { id: string }) => r.id)).toEqual([
      'tfjs/cpu/mlp-1m',
      'tfjs/cpu/many-small',
      'tfjs/wasm/mlp-1m',
      'tfjs/wasm/many-small',
    ]);
    for (const r of out.tfjs.runs) {
      for (const key of ['params', 'variables', 'speedup', 'gbps', 'fractionOfCopy'])
        expectPositive(r[key], `${r.id} ${key}`);
      for (const t of ['fused', 'fusedStep', 'adam']) expectPositive(r[t].msMedian, `${r.id} ${t} ms`);
    }
    expect(out.skipped.some((s: string) => s.includes('tfjs-node'))).toBe(true);

    // Host overhead: a point per tensor count for each optimizer, and a fit.
    const ho = out.hostOverhead;
    expect(ho.fits.map((f: { algo: string }) => f.algo)).toEqual(ALGOS);
    for (const f of ho.fits) {
      expect(f.points.length).toBe(ho.counts.length);
      for (const p of f.points) expectPositive(p.usPerCall, `${f.algo} ${p.tensors} tensors`);
      expect(Number.isFinite(f.a) && Number.isFinite(f.b) && Number.isFinite(f.r2), `${f.algo} fit`).toBe(true);
    }
    expectPositive(ho.stepCount.firstUs, 'step-count check, first window');
    expectPositive(ho.stepCount.lastUs, 'step-count check, last window');
  }, 300_000);

  it('prints a table by default and rejects unknown options', () => {
    const bad = spawnSync(process.execPath, ['bench/run.mjs', '--frobnicate'], { cwd: root, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown option/);
    const help = spawnSync(process.execPath, ['bench/run.mjs', '--help'], { cwd: root, encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--quick/);
  });
});

describe('copyBandwidth()', () => {
  it('measures the CPU copy bandwidth', () => {
    const r = copyBandwidth({ bytes: 4 * 2 ** 20, iterations: 2, device: 'cpu' });
    expect(r.device).toBe('cpu');
    expectPositive(r.gbps, 'gbps');
    expectPositive(r.medianGbps, 'medianGbps');
    expect(r.bytes).toBe(4 * 2 ** 20);
    expect(r.iterations).toBe(2);
    expect(r.threads).toBe(native().nativeInfo().threads);
    expect(r.methods.map((m) => m.name)).toContain('memcpy');
    expect(r.methods.map((m) => m.name)).toContain(r.method);
    // gbps is the best method's best copy: 2 x bytes (read + write) over its time.
    expect(r.gbps).toBeCloseTo((2 * r.bytes) / r.bestSeconds / 1e9, 6);
    expect(Math.max(...r.methods.map((m) => m.bestGBps))).toBeCloseTo(r.gbps, 6);
  });

  it('validates its options', () => {
    // 1.5 is a number but not an integer: out of range (RangeError), as Node's ERR_OUT_OF_RANGE.
    expect(() => copyBandwidth({ bytes: 1.5 })).toThrow(RangeError);
    expect(() => copyBandwidth({ bytes: '4096' as never })).toThrow(TypeError);
    expect(() => copyBandwidth({ bytes: 100 })).toThrow(RangeError);
    expect(() => copyBandwidth({ bytes: 2 ** 41 })).toThrow(RangeError);
    expect(() => copyBandwidth({ iterations: 0 })).toThrow(RangeError);
    expect(() => copyBandwidth({ iterations: '3' as unknown as number })).toThrow(TypeError);
    expect(() => copyBandwidth({ device: 'tpu' as 'cpu' })).toThrow(/device/);
    expect(() => copyBandwidth(null as unknown as object)).toThrow(TypeError);
  });

  it('checks again in the addon', () => {
    const addon = native() as unknown as { copyBandwidth: (b: unknown, i: unknown, d: unknown) => unknown };
    expect(() => addon.copyBandwidth('x', 1, 0)).toThrow(TypeError);
    expect(() => addon.copyBandwidth(4096.5, 1, 0)).toThrow(RangeError);
    expect(() => addon.copyBandwidth(4096, 0, 0)).toThrow(RangeError);
    expect(() => addon.copyBandwidth(4096, 1, 7)).toThrow(TypeError);
  });

  it.skipIf(native().nativeInfo().cudaUsable)('reports that CUDA is not usable when it is not', () => {
    expect(() => copyBandwidth({ bytes: 4096, iterations: 1, device: 'cuda' })).toThrow(/not usable/);
  });
});

describe('checkpoint benchmark (bench/checkpoint.mjs --scale 0.0005 --json)', () => {
  it('runs save, load and background save of both models and reports finite figures', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', 'bench/checkpoint.mjs', '--scale', '0.0005', '--json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.results.map((x: { model: string }) => x.model)).toEqual(['large', 'many']);
    expect(out.rows.map((x: { op: string }) => x.op)).toEqual([
      'save',
      'load',
      'background save',
      'save',
      'load',
      'background save',
    ]);
    for (const row of out.rows) {
      for (const key of ['bytes', 'seconds', 'GBps', 'ofDisk', 'gapMs'])
        expectPositive(row[key], `${row.model} ${row.op} ${key}`);
      expect(Number.isFinite(row.peakRssMiB), `${row.model} ${row.op} peak RSS`).toBe(true);
    }
    for (const m of out.results) {
      expectPositive(m.disk.writeGBps, `${m.model} disk write`);
      expectPositive(m.disk.readGBps, `${m.model} disk read`);
    }
  }, 120_000);
});

describe.skipIf(emulated)('state-dtype benchmark (bench/state_dtypes.mjs --quick --json)', () => {
  it('runs every optimizer with every state dtype and reports the model, the state held and the speed-ups', () => {
    const r = spawnSync(process.execPath, ['bench/state_dtypes.mjs', '--quick', '--json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.rows.map((x: { optimizer: string; stateDtype: string }) => `${x.optimizer}/${x.stateDtype}`)).toEqual(
      ['AdamW', 'AdamWDL', 'Lion', 'SGD'].flatMap((o) => ['float32', 'bfloat16', 'uint8'].map((d) => `${o}/${d}`)),
    );
    for (const row of out.rows) {
      for (const key of ['ms', 'gbPerS', 'fractionOfCopy', 'speedupOverFp32'])
        expectPositive(row[key], `${row.optimizer} ${row.stateDtype} ${key}`);
      // The state the optimizer reports holding is what the byte model reads and writes once.
      const buffers = row.optimizer.startsWith('AdamW') ? 2 : 1;
      expect((row.bytesPerParam - 12) / 2, `${row.optimizer} ${row.stateDtype} state bytes`).toBeCloseTo(
        row.stateBytesPerParam,
        2,
      );
      expect(row.stateBytesPerParam / buffers).toBeCloseTo(
        { float32: 4, bfloat16: 2, uint8: 1 + 4 / 256 }[row.stateDtype as 'float32'],
        2,
      );
    }
  });
});
