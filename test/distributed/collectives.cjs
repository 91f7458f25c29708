// Collectives on typed arrays and Tensors: every op, sync and async, odd sizes, staging.
'use strict';
const { lib, test } = require('./harness.cjs');
const { rng } = require('./model.cjs');

const SIZES = [1, 3, 70001];
const f = Math.fround;

// Values that sum exactly in any order (small multiples of 1/4), so expectations hold for
// MPI's own order too.
function exactValues(n, rank) {
  return Float32Array.from({ length: n }, (_, i) => ((i % 97) - 40 + rank * 3) / 4);
}

test('allReduce sum, avg, max and min on typed arrays (sizes 1, 3, 70001; sync, async, ordered)', async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  for (const n of SIZES) {
    const per = [...Array(W).keys()].map((r) => exactValues(n, r));
    for (const op of ['sum', 'avg', 'max', 'min']) {
      const expected = per[0].map((_, i) => {
        const v = per.map((x) => x[i]);
        const sum = v.reduce((x, y) => f(x + y), 0);
        return op === 'sum' ? sum : op === 'avg' ? f(sum / W) : op === 'max' ? Math.max(...v) : Math.min(...v);
      });
      for (const ordered of [false, true]) {
        for (const form of ['sync', 'async', 'async-host']) {
          const a = form === 'async-host' ? new Float32Array(group.allocateHost(n * 4)) : new Float32Array(n);
          a.set(per[group.rank]);
          if (form === 'sync') group.allReduce(a, { op, ordered });
          else await group.allReduceAsync(a, { op, ordered });
          const i = a.findIndex((x, k) => !Object.is(x, expected[k]));
          check(i < 0, () => `n=${n} ${op} ${form} ordered=${ordered}: [${i}] = ${a[i]}, expected ${expected[i]}`);
        }
      }
    }
  }
});

test('allReduce on integer and float64 arrays (Int32 max, BigInt64 sum, Float64 avg, Uint8 sum)', async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  const r = group.rank;
  const i32 = Int32Array.of(r, -r * 1000, 7);
  group.allReduce(i32, 'max');
  check(i32[0] === W - 1 && i32[1] === 0 && i32[2] === 7, () => `Int32 max: ${[...i32]}`);
  const big = BigInt64Array.of(2n ** 40n + BigInt(r), -5n);
  await group.allReduceAsync(big, 'sum');
  const bigExpected = BigInt(W) * 2n ** 40n + BigInt((W * (W - 1)) / 2);
  check(big[0] === bigExpected && big[1] === BigInt(-5 * W), () => `BigInt64 sum: ${[...big]}`);
  const f64 = Float64Array.of(r + 0.5, 1e300);
  group.allReduce(f64, 'avg');
  check(f64[0] === (W * (W - 1)) / 2 / W + 0.5 && f64[1] === 1e300, () => `Float64 avg: ${[...f64]}`);
  const u8 = Uint8Array.of(r + 1);
  group.allReduce(u8, 'sum');
  check(u8[0] === (W * (W + 1)) / 2, () => `Uint8 sum: ${u8[0]}`);
});

test('ordered allReduce adds in rank order (rank 0 + rank 1 + ...) on every rank, bit for bit', async ({
  group,
  check,
  note,
}) => {
  const W = group.worldSize;
  const n = 100003;
  // Values over many magnitudes, so the order of the additions changes the rounding.
  const valuesOf = (rank) => {
    const next = rng(9000 + rank);
    return Float32Array.from({ length: n }, () => f((next() * 2 - 1) * 2 ** Math.floor(next() * 40 - 20)));
  };
  const sequential = valuesOf(0);
  for (let r = 1; r < W; r++) {
    const v = valuesOf(r);
    for (let i = 0; i < n; i++) sequential[i] = f(sequential[i] + v[i]);
  }
  const ordered = valuesOf(group.rank);
  await group.allReduceAsync(ordered, { op: 'sum', ordered: true });
  const mpi = valuesOf(group.rank);
  await group.allReduceAsync(mpi, 'sum');
  let differ = 0;
  let worst = 0;
  const absSum = new Float64Array(n);
  for (let r = 0; r < W; r++) valuesOf(r).forEach((x, i) => (absSum[i] += Math.abs(x)));
  for (let i = 0; i < n; i++) {
    check(Object.is(ordered[i], sequential[i]), () => `ordered [${i}] = ${ordered[i]}, sequential ${sequential[i]}`);
    if (!Object.is(mpi[i], sequential[i])) differ++;
    // Two orders of W terms differ by at most 2 (W - 1) u sum|x| (u = 2^-24), to first order.
    const bound = 2 * (W - 1) * 2 ** -24 * absSum[i] * (1 + 1e-6);
    worst = Math.max(worst, Math.abs(mpi[i] - sequential[i]) / (bound || 1));
    check(Math.abs(mpi[i] - sequential[i]) <= bound, () => `MPI's sum [${i}] = ${mpi[i]} is outside the bound`);
  }
  if (W === 2) check(differ === 0, `with 2 ranks MPI's sum is a + b: ${differ} elements differ from rank order`);
  note(`MPI's own order: ${differ} of ${n} elements differ from rank order; worst = ${worst.toFixed(3)} of the bound`);
  // Every rank must hold the same bits (replicas stay in sync).
  const h = new Float64Array([hash(mpi), -hash(mpi)]);
  group.allReduce(h, 'max');
  check(h[0] === -h[1], "MPI's all-reduce gave different bits on different ranks");
});

function hash(a) {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193) >>> 0;
  return h;
}

test('reduceScatter, allGather and broadcast on typed arrays (sync and async, ordered)', async ({ group, check }) => {
  const W = group.worldSize;
  const r = group.rank;
  for (const n of SIZES) {
    const input = Float32Array.from({ length: n * W }, (_, i) => (i % 13) + r / 4);
    const out = new Float32Array(n);
    group.reduceScatter(input, out, 'sum');
    const out2 = new Float32Array(n);
    await group.reduceScatterAsync(input, out2, { op: 'avg', ordered: true });
    for (let i = 0; i < n; i++) {
      const base = ((r * n + i) % 13) * W + (W * (W - 1)) / 2 / 4;
      if (!check(out[i] === base, () => `reduceScatter n=${n} [${i}] = ${out[i]}, expected ${base}`)) break;
      if (!check(out2[i] === f(base / W), () => `reduceScatter avg n=${n} [${i}] = ${out2[i]}`)) break;
    }
    const mine = Float32Array.from({ length: n }, (_, i) => r * 1000 + i);
    const gathered = new Float32Array(n * W);
    await group.allGatherAsync(mine, gathered);
    for (let k = 0; k < n * W; k++) {
      const expected = Math.floor(k / n) * 1000 + (k % n);
      if (!check(gathered[k] === expected, () => `allGather n=${n} [${k}] = ${gathered[k]}`)) break;
    }
    for (let root = 0; root < W; root++) {
      const b = Uint16Array.from({ length: n }, (_, i) => (r === root ? (i * 7 + root) & 0xffff : 0));
      if (root % 2) group.broadcast(b, root);
      else await group.broadcastAsync(b, root);
      check(
        b.every((x, i) => x === ((i * 7 + root) & 0xffff)),
        () => `broadcast n=${n} from ${root}`,
      );
    }
  }
});

test('collectives on Tensors: fp32 and bfloat16 (reduced in fp32, rounded once; gathered and broadcast as exact bits)', async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  const r = group.rank;
  for (const dtype of ['float32', 'bfloat16']) {
    for (const n of SIZES) {
      const next = rng(77 + r);
      const values = Float32Array.from({ length: n }, () => next() * 2 - 1);
      const t = lib.Tensor.from(values, { dtype });
      await group.allReduceAsync(t, 'avg');
      // Expected: every rank's values in this dtype, widened, summed in fp32, / W, rounded.
      const per = [...Array(W).keys()].map((k) => {
        const g = rng(77 + k);
        return lib.Tensor.from(
          Float32Array.from({ length: n }, () => g() * 2 - 1),
          { dtype },
        ).toFloat32Array();
      });
      const sum = per[0].slice();
      for (let k = 1; k < W; k++) for (let i = 0; i < n; i++) sum[i] = f(sum[i] + per[k][i]);
      const expected = lib.Tensor.from(
        sum.map((x) => f(x / W)),
        { dtype },
      ).toFloat32Array();
      const got = t.toFloat32Array();
      // MPI's order with more than 2 ranks: within an ulp of the dtype per rank.
      let within = true;
      for (let i = 0; i < n; i++) {
        const ulp = dtype === 'bfloat16' ? 2 ** -7 : 2 ** -23;
        if (Math.abs(got[i] - expected[i]) > ulp * Math.max(Math.abs(expected[i]), 1) * W) within = false;
      }
      check(within, `${dtype} n=${n}: allReduce avg is off`);
      if (W === 2)
        check(
          got.every((x, i) => Object.is(x, expected[i])),
          `${dtype} n=${n}: 2 ranks must be exact`,
        );

      // Exact bits: gather and broadcast.
      const mine = lib.Tensor.from(values, { dtype });
      const all = lib.Tensor.zeros([n * W], { dtype });
      group.allGather(mine, all);
      const bits = dtype === 'float32' ? new Uint32Array(all.toFloat32Array().buffer) : all.toBits();
      for (let k = 0; k < W; k++) {
        const own = lib.Tensor.from(per[k], { dtype });
        const ownBits = dtype === 'float32' ? new Uint32Array(own.toFloat32Array().buffer) : own.toBits();
        check(
          ownBits.every((b, i) => b === bits[k * n + i]),
          `${dtype} n=${n}: allGather block ${k}`,
        );
      }
      const b = lib.Tensor.from(values, { dtype });
      await group.broadcastAsync(b, W - 1);
      const want = lib.Tensor.from(per[W - 1], { dtype });
      const wantBits = dtype === 'float32' ? new Uint32Array(want.toFloat32Array().buffer) : want.toBits();
      const gotBits = dtype === 'float32' ? new Uint32Array(b.toFloat32Array().buffer) : b.toBits();
      const same = gotBits.every((x, i) => x === wantBits[i]);
      check(same, `${dtype} n=${n}: broadcast`);
      const rs = lib.Tensor.zeros([n], { dtype });
      const big = lib.Tensor.from(
        Float32Array.from({ length: n * W }, (_, i) => i + r),
        { dtype },
      );
      group.reduceScatter(big, rs, 'max');
      // The max of values already in the dtype is exact.
      const blocks = [...Array(W).keys()].map((k) =>
        lib.Tensor.from(
          Float32Array.from({ length: n }, (_, i) => r * n + i + k),
          { dtype },
        ).toFloat32Array(),
      );
      const rsMax = blocks[0].map((_, i) => Math.max(...blocks.map((b) => b[i])));
      check(
        rs.toFloat32Array().every((x, i) => Object.is(x, rsMax[i])),
        () => `${dtype} n=${n}: reduceScatter max ${rs.toFloat32Array().slice(0, 3)} vs ${rsMax.slice(0, 3)}`,
      );
    }
  }
});

test('bad arguments are errors naming the problem, thrown before anything is sent (the group stays usable)', async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  const expectError = (fn, pattern, what) => {
    try {
      fn();
      check(false, `${what}: no error`);
    } catch (e) {
      check(pattern.test(e.message), `${what}: message "${e.message}" does not match ${pattern}`);
    }
  };
  expectError(
    () => group.reduceScatter(new Float32Array(W * 3 + 1), new Float32Array(3)),
    /worldSize/,
    'reduceScatter sizes',
  );
  expectError(() => group.allGather(new Float32Array(2), new Float32Array(2 * W + 1)), /worldSize/, 'allGather sizes');
  expectError(
    () => group.allGather(new Float32Array(2), new Float64Array(2 * W)),
    /Float32Array but output/,
    'allGather types',
  );
  expectError(() => group.allReduce(new Int32Array(2), 'avg'), /'avg' needs floating-point/, 'avg on ints');
  expectError(() => group.allReduce(new Float32Array(2), 'mean'), /op must be one of/, 'unknown op');
  expectError(() => group.allReduce(new Float32Array(2), { op: 'sum', foo: 1 }), /unknown option 'foo'/, 'unknown key');
  expectError(() => group.broadcast(new Float32Array(2), W), /root must be an integer from 0/, 'root out of range');
  expectError(() => group.allReduce(new Uint8ClampedArray(2)), /must be a Tensor or a typed array/, 'clamped array');
  expectError(() => group.allReduce([1, 2]), /must be a Tensor or a typed array/, 'plain array');
  expectError(
    () => group.allGather(lib.Tensor.zeros([2]), new Float32Array(2 * W)),
    /both be Tensors or both be typed arrays/,
    'mixed kinds',
  );
  const disposed = lib.Tensor.zeros([3]);
  disposed.dispose();
  expectError(() => group.allReduce(disposed), /disposed/, 'disposed tensor');
  let asyncError;
  await group.allReduceAsync(new Float32Array(2), 'nope').catch((e) => (asyncError = e));
  check(asyncError instanceof TypeError, 'the async form rejects with the same TypeError');
  // The group is still in step on every rank.
  const x = Float32Array.of(1);
  group.allReduce(x, 'sum');
  check(x[0] === W, `follow-up allReduce gave ${x[0]}`);
});

test('asynchronous collectives leave the event loop free and complete in submission order', async ({
  group,
  check,
  note,
}) => {
  const n = 4_000_000;
  const big = new Float32Array(group.allocateHost(n * 4)).fill(1);
  const small = Float32Array.of(group.rank);
  // The last rank joins 300 ms late: meanwhile the others' timers must keep firing.
  if (group.rank === group.worldSize - 1) await new Promise((resolve) => setTimeout(resolve, 300));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const order = [];
  const a = group.allReduceAsync(big, 'sum').then(() => order.push('big'));
  const b = group.allReduceAsync(small, 'max').then(() => order.push('small'));
  await Promise.all([a, b]);
  clearInterval(timer);
  check(order.join() === 'big,small', `completion order ${order}`);
  check(big[n - 1] === group.worldSize && small[0] === group.worldSize - 1, 'results');
  if (group.rank !== group.worldSize - 1) {
    check(ticks >= 10, `only ${ticks} timer ticks while waiting ~300 ms for the late rank`);
    note(`${ticks} ticks of a 10 ms timer while waiting`);
  }
});

test('allReduceMetrics of a sum of shards: pre-reduced on each rank, summed, reduced', async ({ group, check }) => {
  const { allReduceMetrics } = require('./harness.cjs').distributed;
  const r = group.rank;
  // Rank r holds the shard r of a tensor: its norms and dots are those of the shard.
  const shard = { 'l2_norm/grad/w': 3 + r, 'l2_norm/update/w': 1, 'cosine/update_grad/w': 0.5 };
  const m = await allReduceMetrics(group, shard);
  const W = group.worldSize;
  let sq = 0;
  let dot = 0;
  for (let k = 0; k < W; k++) {
    sq += (3 + k) ** 2;
    dot += 0.5 * (3 + k) * 1;
  }
  check(Math.abs(m['l2_norm/grad/w'] - Math.sqrt(sq)) < 1e-12, `grad norm ${m['l2_norm/grad/w']}`);
  check(Math.abs(m['l2_norm/update/w'] - Math.sqrt(W)) < 1e-12, `update norm ${m['l2_norm/update/w']}`);
  check(Math.abs(m['cosine/update_grad/w'] - dot / Math.sqrt(sq * W)) < 1e-12, `cosine ${m['cosine/update_grad/w']}`);
});
