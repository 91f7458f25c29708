// fused-optim/distributed without MPI: init()'s errors when the MPI module is missing or
// broken, the package's subpath export, torch's greedy partition, the buckets, and the
// TypeScript layer (data parallelism, ZeRO-1) over a one-rank loopback backend, against a
// plain optimizer. The multi-rank behaviour is in test/distributed.mpi.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdamW, GradScaler, LinearLR, Lion, Parameter, Tensor } from '../src/index';
import {
  type CollectiveBackend,
  type CollectiveCall,
  ProcessGroup,
  ZeroRedundancyOptimizer,
  allReduceGrads,
  broadcastParams,
  init,
  partitionParams,
} from '../src/distributed/index';
import { CollectiveKind } from '../src/distributed/backend';
import { cutBuckets } from '../src/distributed/buckets';

const root = join(__dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'fused-optim-dist-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** One rank: every collective is the identity (avg divides by 1), as MPI with one process. */
class LoopbackBackend implements CollectiveBackend {
  readonly info = { name: 'loopback', rank: 0, worldSize: 1, library: 'none', hostname: 'here' };
  readonly devices = ['cpu'] as const;
  timeoutSeconds = 60;
  destroyed = false;
  calls: CollectiveCall[] = [];
  get pending() {
    return 0;
  }
  run(call: CollectiveCall): void {
    this.calls.push(call);
    if (call.kind === CollectiveKind.ReduceScatter || call.kind === CollectiveKind.AllGather)
      (call.output as Float32Array).set(call.input as Float32Array);
  }
  async runAsync(call: CollectiveCall): Promise<void> {
    await Promise.resolve();
    this.run(call);
  }
  allocateHost(bytes: number): ArrayBuffer {
    return new ArrayBuffer(bytes);
  }
  destroy(): void {
    this.destroyed = true;
  }
  abort(): void {}
}

function params(seed: number, sizes = [70001, 3, 1, 37]): Parameter[] {
  return sizes.map((n, i) => {
    const v = Float32Array.from({ length: n }, (_, k) => Math.sin(seed * 1000 + i * 97 + k));
    return new Parameter(Tensor.from(v), { name: `p${i}` });
  });
}

function bits(t: Tensor): Uint32Array {
  return new Uint32Array(t.toFloat32Array().buffer);
}

describe('init()', () => {
  it('rejects bad options with a TypeError or RangeError naming them', async () => {
    await expect(init({ backend: 'nccl' } as never)).rejects.toThrow(/backend must be 'mpi', got "nccl"/);
    await expect(init({ timeoutSeconds: 0 })).rejects.toThrow(RangeError);
    await expect(init({ timeoutSeconds: 0 })).rejects.toThrow(/timeoutSeconds must be a finite number > 0/);
    await expect(init({ timeoutSecs: 5 } as never)).rejects.toThrow(/unknown option 'timeoutSecs'/);
    await expect(init(null as never)).rejects.toThrow(TypeError);
  });

  it('without the MPI module: an error naming the missing file, what builds it and how to install MPI', () => {
    const missing = join(tmp, 'no', 'fused_optim_mpi.node');
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        "require('./dist/cjs/distributed/index.js').init().catch((e) => { console.log(e.message); process.exit(3); })",
      ],
      { cwd: root, encoding: 'utf8', env: { ...process.env, FUSED_OPTIM_MPI_MODULE: missing } },
    );
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toContain(`the MPI module is not built (${missing} does not exist)`);
    expect(r.stdout).toMatch(/MPI compiler wrapper \(mpicc\)/);
    expect(r.stdout).toMatch(/apt-get install openmpi-bin libopenmpi-dev/);
    expect(r.stdout).toMatch(/npm rebuild fused-optim/);
  });

  it('with an MPI module that cannot load: the loader error and the library it needs', () => {
    const broken = join(tmp, 'broken.node');
    writeFileSync(broken, 'not a shared object');
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        "require('./dist/cjs/distributed/index.js').init().catch((e) => { console.log(e.message); process.exit(3); })",
      ],
      { cwd: root, encoding: 'utf8', env: { ...process.env, FUSED_OPTIM_MPI_MODULE: broken } },
    );
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toContain(`the MPI module ${broken} could not be loaded (`);
    expect(r.stdout).toMatch(/invalid ELF header|file too short/);
    expect(r.stdout).toMatch(/Is the MPI library it was built against installed/);
  });
});

describe('the fused-optim/distributed export', () => {
  it('resolves for require and import, the same classes, and loads no native module until init()', () => {
    const code = `
      const d = require('fused-optim/distributed');
      const loaded = () => Object.keys(require.cache).filter((f) => f.endsWith('.node'));
      import('fused-optim/distributed').then((e) => {
        console.log(JSON.stringify({
          same: e.ZeroRedundancyOptimizer === d.ZeroRedundancyOptimizer && e.init === d.init,
          names: Object.keys(d).sort(),
          native: loaded(),
        }));
      });`;
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.same).toBe(true);
    expect(out.names).toEqual(
      expect.arrayContaining([
        'init',
        'ProcessGroup',
        'allReduceGrads',
        'broadcastParams',
        'ZeroRedundancyOptimizer',
        'saveShardedCheckpoint',
        'loadShardedCheckpoint',
        'saveConsolidatedCheckpoint',
        'allReduceMetrics',
      ]),
    );
    expect(out.native).toEqual([]);
  });
});

describe("partitionParams: torch's greedy partition", () => {
  const p = (n: number) => new Parameter(Tensor.zeros([n]));
  it('largest first to the rank with the fewest elements, ties to the lower rank, totals carried across groups', () => {
    // Group 0: 10, 5, 10, 3 -> sorted 10 (#0), 10 (#2), 5 (#1), 3 (#3):
    //   #0 -> rank 0 (0, 0); #2 -> rank 1 (10, 0); #1 -> rank 0 (10, 10); #3 -> rank 1 (15, 10) -> totals 15, 13.
    // Group 1: 4, 4 -> #0 -> rank 1 (15, 13) -> 15, 17; #1 -> rank 0 -> 19, 17.
    const groups = [
      [p(10), p(5), p(10), p(3)],
      [p(4), p(4)],
    ];
    expect(partitionParams(groups, 2)).toEqual({
      owner: [
        [0, 0, 1, 1],
        [1, 0],
      ],
      elements: [19, 17],
    });
  });

  it('more ranks than params leaves ranks empty; one rank owns everything', () => {
    expect(partitionParams([[p(2), p(1)]], 4)).toEqual({ owner: [[0, 1]], elements: [2, 1, 0, 0] });
    expect(partitionParams([[p(2), p(1)], [p(7)]], 1).owner).toEqual([[0, 0], [0]]);
  });
});

describe('buckets', () => {
  it('cut in order at the byte limit; a larger tensor gets a bucket of its own', () => {
    expect(cutBuckets([4, 4, 4, 20, 4], 10)).toEqual([[0, 1], [2], [3], [4]]);
    expect(cutBuckets([2, 3], 4, 4)).toEqual([[0], [1]]); // 2 aligned up to 4, + 3 > 4
    expect(cutBuckets([], 10)).toEqual([]);
  });
});

describe('Tensor.toFloat32Array(out) and toBits(out): the staging copies, into a given array', () => {
  it('write the same values as a new copy, into a view of a larger buffer, and return it', () => {
    const values = Float32Array.from({ length: 70001 }, (_, i) => Math.sin(i) * 3);
    const t = Tensor.from(values);
    const big = new Float32Array(70005).fill(7);
    const view = big.subarray(2, 70003);
    expect(t.toFloat32Array(view)).toBe(view);
    expect(bits(Tensor.from(view))).toEqual(bits(t));
    expect([big[0], big[1], big[70003], big[70004]]).toEqual([7, 7, 7, 7]);
    const h = Tensor.from(values, { dtype: 'bfloat16' });
    const out = new Uint16Array(70001);
    h.toBits(out);
    expect(out).toEqual(h.toBits());
  });

  it('refuse an array of another type or length, before writing anything', () => {
    const t = Tensor.from([1, 2, 3]);
    const short = new Float32Array(2).fill(9);
    expect(() => t.toFloat32Array(short)).toThrow(/out has 2 elements but the tensor has 3/);
    expect(short).toEqual(Float32Array.of(9, 9));
    expect(() => t.toFloat32Array(new Float64Array(3) as never)).toThrow(/out must be a Float32Array/);
    expect(() => Tensor.from([1], { dtype: 'float16' }).toBits(new Uint16Array(2))).toThrow(/out has 2 elements/);
    expect(() => Tensor.from([1], { dtype: 'float16' }).toBits(new Int16Array(1) as never)).toThrow(
      /out must be a Uint16Array/,
    );
    // The addon checks again (JavaScript cannot make it write out of bounds).
    expect(() => t.handle.toFloat32(new Float32Array(2))).toThrow(/out has 2 elements but the tensor has 3/);
    expect(() => t.handle.toFloat32(new Uint8Array(12) as never)).toThrow(/out must be a Float32Array/);
  });
});

describe('data parallelism and ZeRO-1 over one rank (a loopback backend)', () => {
  it('allReduceGrads and broadcastParams: a layout check, then one collective per bucket; grads unchanged (avg over 1)', async () => {
    const backend = new LoopbackBackend();
    const group = new ProcessGroup(backend);
    const ps = params(1);
    ps.forEach((q, i) => {
      if (i !== 1) q.grad = Tensor.from(q.data.toFloat32Array().map((x) => x * 0.5));
    });
    const before = ps.map((q) => q.grad?.toFloat32Array());
    await allReduceGrads(ps, { group, bucketBytes: 64 * 1024 });
    // 3 grads: 70001 x 4 bytes alone; 1 + 37 elements together.
    expect(backend.calls.map((c) => c.label.replace(/#\d+/, '#'))).toEqual([
      'allReduce # (4 Float64Array, max): allReduceGrads: layout check',
      'allReduce # (70001 Float32Array, avg): allReduceGrads bucket 1 of 2 (1 grads)',
      'allReduce # (38 Float32Array, avg): allReduceGrads bucket 2 of 2 (2 grads)',
    ]);
    ps.forEach((q, i) => {
      if (i === 1) expect(q.grad).toBeNull();
      else expect(bits(q.grad!)).toEqual(new Uint32Array(before[i]!.buffer));
    });
    await broadcastParams(ps, { group });
    expect(backend.calls.at(-1)!.kind).toBe(CollectiveKind.Broadcast);
  });

  it('bad calls are TypeErrors or RangeErrors naming the problem, before any collective', async () => {
    const backend = new LoopbackBackend();
    const group = new ProcessGroup(backend);
    const ps = params(2);
    await expect(allReduceGrads(ps, { group: {} as never })).rejects.toThrow(
      /group must be the ProcessGroup from init\(\)/,
    );
    await expect(allReduceGrads(ps, { group, op: 'max' as never })).rejects.toThrow(/op must be 'avg' or 'sum'/);
    await expect(allReduceGrads(ps, { group, bucketBytes: 0 })).rejects.toThrow(
      /bucketBytes must be a positive integer/,
    );
    await expect(allReduceGrads(ps, { group, extra: 1 } as never)).rejects.toThrow(/unknown option 'extra'/);
    await expect(allReduceGrads([ps[0], ps[0]], { group })).rejects.toThrow(/listed twice/);
    ps[0].sparseGrad = { rows: Int32Array.of(0), values: Tensor.zeros([1]) };
    await expect(allReduceGrads(ps, { group })).rejects.toThrow(/row-sparse grad; only dense grads can be reduced/);
    await expect(broadcastParams(ps, { group, root: 1 })).rejects.toThrow(/root must be an integer from 0 to 0/);
    expect(() => group.allReduce(new Float32Array(2), 'median' as never)).toThrow(
      /op must be one of sum, avg, max, min/,
    );
    expect(() => (group.timeoutSeconds = -1)).toThrow(/timeoutSeconds must be a finite number > 0/);
    expect(backend.calls).toEqual([]);
  });

  it('ZeRO-1 with one rank equals the plain optimizer bit for bit: groups, scheduler, scaler, global-norm clip', () => {
    const group = new ProcessGroup(new LoopbackBackend());
    const options = { gradClip: { type: 'globalNorm', maxNorm: 0.3 } as const, betas: [0.9, 0.99] as [number, number] };
    const a = params(3);
    const b = params(3);
    const groupsOf = (ps: Parameter[]) => [
      { params: [ps[0], ps[2]], lr: 0.01 },
      { params: [ps[1], ps[3]], lr: 0.02, weightDecay: 0 },
    ];
    const plain = new AdamW(groupsOf(a), options);
    const zero = new ZeroRedundancyOptimizer(groupsOf(b), (shard) => new AdamW(shard, options), { group });
    expect(zero.localOptimizer).toBeInstanceOf(AdamW);
    expect(zero.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual([
      [0.01, 0.01],
      [0.02, 0],
    ]);
    const sa = new LinearLR(plain, { startFactor: 0.5, totalIters: 3 });
    const sb = new LinearLR(zero, { startFactor: 0.5, totalIters: 3 });
    const ga = new GradScaler({ initScale: 1024 });
    const gb = new GradScaler({ initScale: 1024 });
    for (let step = 0; step < 4; step++) {
      for (const ps of [a, b])
        ps.forEach((q, i) => {
          const g = q.data.toFloat32Array().map((x, k) => (x - Math.cos(step + i + k)) * 1024);
          if (step === 2 && i === 0) g[5] = Infinity;
          q.grad = Tensor.from(g);
        });
      expect(gb.step(zero)).toEqual(ga.step(plain));
      ga.update();
      gb.update();
      sa.step();
      sb.step();
      a.forEach((q, i) => expect(bits(b[i].data)).toEqual(bits(q.data)));
    }
    expect(zero.paramGroups[0].lr).toBe(plain.paramGroups[0].lr);
  });

  it('ZeRO-1 refuses a factory that does not build a fused optimizer over exactly its shard', () => {
    const group = new ProcessGroup(new LoopbackBackend());
    const ps = params(4);
    expect(() => new ZeroRedundancyOptimizer(ps, () => ({}) as never, { group })).toThrow(
      /the factory must return a fused-optim optimizer/,
    );
    expect(() => new ZeroRedundancyOptimizer(ps, () => new Lion(ps.slice(1)), { group })).toThrow(/exactly the params/);
    expect(() => new ZeroRedundancyOptimizer(ps, (s) => new Lion(s), { group: 1 as never })).toThrow(
      /options.group must be the ProcessGroup/,
    );
  });
});
