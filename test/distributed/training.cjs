// Data parallelism and ZeRO-1 against single-process references (test/distributed/model.cjs).
'use strict';
const { lib, distributed, test, sameBits, hashTensors } = require('./harness.cjs');
const { SPECS, buildParams, groupsOf, makeOptimizer, rankGrad, wholeBatchGrad, numel } = require('./model.cjs');

const { allReduceGrads, broadcastParams, ZeroRedundancyOptimizer, allReduceMetrics } = distributed;
const KINDS = ['AdamW', 'Lion', 'AdamWDL'];
const STEPS = 5;

function roundTo(dtype) {
  if (dtype === 'float32') return (x) => x;
  return (x) => lib.Tensor.from(x, { dtype }).toFloat32Array();
}

/** Sets every param's grad for `step` from `values(p, i)`, or none before SPECS[i].from. */
function setGrads(params, step, gradDtype, values) {
  params.forEach((p, i) => {
    if (step < SPECS[i].from) {
      p.grad = null;
      return;
    }
    p.grad = lib.Tensor.from(values(p.data.toFloat32Array(), i), { dtype: gradDtype, shape: p.data.shape });
  });
}

function compareParams(a, b, what, check) {
  a.forEach((p, i) => {
    const d = sameBits(p.data, b[i].data);
    check(d === '', () => `${what}: param '${p.name}': ${d}`);
  });
}

async function sameOnEveryRank(group, tensors) {
  const h = hashTensors(tensors);
  const v = Float64Array.of(h, -h);
  await group.allReduceAsync(v, 'max');
  return v[0] === -v[1];
}

// ---------------------------------------------------------------------------------------
// DDP: N ranks with 1/N of the batch each == one process on the whole batch.

for (const kind of KINDS) {
  for (const dtype of ['float32', 'bfloat16']) {
    for (const ordered of [true, false]) {
      const name = `DDP ${kind}, ${dtype} params${dtype === 'float32' ? '' : ' (fp32 masters, bf16 grads)'}, ${ordered ? 'ordered' : "MPI's own"} sum: equals one process on the whole batch`;
      test(name, async ({ group, check, note }) => {
        const W = group.worldSize;
        const exact = ordered || W === 2;
        const gradDtype = dtype;
        // Each rank starts from other values; broadcastParams makes them rank 0's.
        const params = buildParams(lib, { dtype, seed: 1 + group.rank });
        await broadcastParams(params, { group });
        const ref = buildParams(lib, { dtype, seed: 1 });
        compareParams(params, ref, 'after broadcastParams', check);
        const opt = makeOptimizer(lib, kind, groupsOf(kind, params));
        const refOpt = makeOptimizer(lib, kind, groupsOf(kind, ref));
        const round = roundTo(gradDtype);
        for (let step = 0; step < STEPS; step++) {
          if (step === 3) for (const o of [opt, refOpt]) o.paramGroups[0].lr *= 0.5; // lr changed mid-run
          setGrads(params, step, gradDtype, (p, i) => rankGrad(p, i, step, group.rank, W));
          setGrads(ref, step, gradDtype, (p, i) => wholeBatchGrad(p, i, step, W, round));
          await allReduceGrads(params, { group, ordered, bucketBytes: 64 * 1024 });
          if (exact) {
            params.forEach((p, i) => {
              if (p.grad)
                check(sameBits(p.grad, ref[i].grad) === '', () => `step ${step}: grad of '${p.name}' differs`);
            });
          } else if (step === 0) {
            // MPI's order with more than 2 ranks: within 2 (W - 1) u sum_r |g_r| of the ordered sum.
            let worst = 0;
            params.forEach((p, i) => {
              if (!p.grad) return;
              const per = [...Array(W).keys()].map((r) => round(rankGrad(ref[i].data.toFloat32Array(), i, step, r, W)));
              const got = p.grad.toFloat32Array();
              const want = ref[i].grad.toFloat32Array();
              const u = gradDtype === 'float32' ? 2 ** -24 : 2 ** -8;
              for (let k = 0; k < got.length; k++) {
                const abs = per.reduce((s, g) => s + Math.abs(g[k]), 0) / W;
                const bound = (2 * (W - 1) * 2 ** -24 * abs + u * Math.abs(want[k]) * 2) * (1 + 1e-6);
                const d = Math.abs(got[k] - want[k]);
                worst = Math.max(worst, d / (bound || 1));
                if (d > bound) {
                  check(false, () => `grad of '${p.name}' [${k}]: ${got[k]} vs ${want[k]}, outside the bound ${bound}`);
                  break;
                }
              }
            });
            note(`step 0 grads: worst difference ${worst.toFixed(3)} of the stated bound`);
          }
          opt.step();
          refOpt.step();
          if (exact) compareParams(params, ref, `after step ${step}`, check);
          check(
            await sameOnEveryRank(
              group,
              params.map((p) => p.data),
            ),
            `step ${step}: ranks hold different params`,
          );
        }
      });
    }
  }
}

test("DDP with a GradScaler: an inf in one rank's grads reaches every rank, and every rank skips the step", async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  const params = buildParams(lib, { seed: 3 });
  const opt = makeOptimizer(lib, 'AdamW', groupsOf('AdamW', params));
  const scaler = new lib.GradScaler({ initScale: 2 ** 10 });
  for (let step = 0; step < 4; step++) {
    const before = params.map((p) => p.data.toFloat32Array());
    setGrads(params, step, 'float32', (p, i) => {
      const g = rankGrad(p, i, step, group.rank, W).map((x) => x * scaler.getScale());
      if (step === 2 && group.rank === W - 1 && i === 2) g[12345] = Infinity;
      return g;
    });
    await allReduceGrads(params, { group });
    const { skipped } = scaler.step(opt);
    scaler.update();
    check(skipped === (step === 2), `step ${step}: skipped = ${skipped}`);
    if (step === 2)
      check(
        params.every((p, i) => p.data.toFloat32Array().every((x, k) => Object.is(x, before[i][k]))),
        'the skipped step changed a param',
      );
    const scale = Float64Array.of(scaler.getScale(), -scaler.getScale());
    group.allReduce(scale, 'max');
    check(scale[0] === -scale[1], `step ${step}: the ranks' scales differ`);
    check(
      await sameOnEveryRank(
        group,
        params.map((p) => p.data),
      ),
      `step ${step}: ranks hold different params`,
    );
  }
  check(scaler.getScale() === 2 ** 9, `scale after one overflow: ${scaler.getScale()}`);
});

test('allReduceGrads: ranks with different grads (a param without a grad on one rank) all throw, and the group stays in step', async ({
  group,
  check,
}) => {
  const params = buildParams(lib, { seed: 5 });
  setGrads(params, 0, 'float32', (p) => new Float32Array(p.length).fill(1));
  if (group.rank === 1) params[1].grad = null;
  let error;
  await allReduceGrads(params, { group }).catch((e) => (error = e));
  check(error && /ranks passed different tensors/.test(error.message), () => `error: ${error && error.message}`);
  check(
    error && /rank \d+ has grads for \d+ of 6 params/.test(error.message),
    () => `error: ${error && error.message}`,
  );
  // A correct call afterwards works.
  params[1].grad = lib.Tensor.from(new Float32Array(5).fill(1));
  await allReduceGrads(params, { group, op: 'sum' });
  check(params[1].grad.toFloat32Array()[0] === group.worldSize, 'follow-up allReduceGrads');
  let bad;
  try {
    await allReduceGrads(params, { group, op: 'max' });
  } catch (e) {
    bad = e;
  }
  check(bad instanceof TypeError && /op must be 'avg' or 'sum'/.test(bad.message), 'op max is refused');
});

// ---------------------------------------------------------------------------------------
// ZeRO-1 == data-parallel optimizer, bit for bit.

const ZERO_SETUPS = [
  { kind: 'AdamW', dtype: 'float32', clip: 0.5, scaler: true, scheduler: 'LinearLR', async: false },
  { kind: 'AdamW', dtype: 'bfloat16', clip: 0.5, scaler: true, scheduler: 'LinearLR', async: true },
  { kind: 'Lion', dtype: 'float32', clip: 0.5, scaler: false, scheduler: 'CosineAnnealingLR', async: true },
  { kind: 'Lion', dtype: 'bfloat16', clip: null, scaler: true, scheduler: 'CosineAnnealingLR', async: false },
  { kind: 'AdamWDL', dtype: 'float32', clip: null, scaler: true, scheduler: 'TransformerLR', async: true },
  { kind: 'AdamWDL', dtype: 'bfloat16', clip: 0.5, scaler: false, scheduler: 'TransformerLR', async: false },
];

function makeScheduler(name, opt) {
  if (name === 'LinearLR') return new lib.LinearLR(opt, { startFactor: 0.25, totalIters: 4 });
  if (name === 'CosineAnnealingLR') return new lib.CosineAnnealingLR(opt, { tMax: 6, etaMin: 1e-4 });
  return new lib.TransformerLR(opt, { dModel: 64, warmupSteps: 3 });
}

function stateOf(opt, name) {
  const sd = opt.stateDict();
  const flat = opt.paramGroups.flatMap((g) => g.params);
  const i = flat.findIndex((p) => p.name === name);
  return sd.state[i];
}

function sameState(a, b) {
  if (!a || !b) return a === b ? '' : `state ${a ? 'present' : 'missing'} vs ${b ? 'present' : 'missing'}`;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const x = a[k];
    const y = b[k];
    if (typeof x === 'number' || typeof y === 'number') {
      if (x !== y) return `${k}: ${x} vs ${y}`;
      continue;
    }
    if (!x || !y || x.length !== y.length) return `${k}: missing or of another length`;
    const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const yb = new Uint32Array(y.buffer, y.byteOffset, y.length);
    for (let i = 0; i < xb.length; i++) if (xb[i] !== yb[i]) return `${k}[${i}] differs`;
  }
  return '';
}

for (const s of ZERO_SETUPS) {
  const features = [
    s.clip ? `gradClip globalNorm ${s.clip}` : null,
    s.scaler ? 'GradScaler (an inf on one rank only)' : null,
    s.scheduler,
    s.async ? 'stepAsync' : 'step',
  ].filter(Boolean);
  test(`ZeRO-1 ${s.kind}, ${s.dtype} params, ${features.join(', ')}: equals the data-parallel optimizer bit for bit`, async ({
    group,
    check,
    note,
  }) => {
    const W = group.worldSize;
    const options = s.clip ? { gradClip: { type: 'globalNorm', maxNorm: s.clip } } : {};
    const ddpParams = buildParams(lib, { dtype: s.dtype, seed: 11 });
    const zeroParams = buildParams(lib, { dtype: s.dtype, seed: 11 });
    const ddp = makeOptimizer(lib, s.kind, groupsOf(s.kind, ddpParams), options);
    const zero = new ZeroRedundancyOptimizer(
      groupsOf(s.kind, zeroParams),
      (shard) => makeOptimizer(lib, s.kind, shard, options),
      { group, bucketBytes: 32 * 1024 },
    );
    const ddpSched = makeScheduler(s.scheduler, ddp);
    const zeroSched = makeScheduler(s.scheduler, zero);
    const ddpScaler = s.scaler ? new lib.GradScaler({ initScale: 2 ** 12 }) : null;
    const zeroScaler = s.scaler ? new lib.GradScaler({ initScale: 2 ** 12 }) : null;
    // The inf goes into a param that a rank other than 0 owns, on that rank only.
    const victim = zeroParams.findIndex((p) => zero.ownerOf(p) === W - 1 && SPECS[zeroParams.indexOf(p)].from === 0);
    for (let step = 0; step < STEPS + 1; step++) {
      if (step === 3) {
        ddp.paramGroups[1].lr *= 0.5;
        zero.paramGroups[1].lr *= 0.5;
      }
      const scale = ddpScaler ? ddpScaler.getScale() : 1;
      for (const [params] of [[ddpParams], [zeroParams]]) {
        setGrads(params, step, s.dtype, (p, i) => rankGrad(p, i, step, group.rank, W).map((x) => x * scale));
        await allReduceGrads(params, { group });
      }
      const injected = s.scaler && step === 2;
      if (injected) {
        // What an all-reduce would have brought to every rank (DDP), and only to the owner (ZeRO).
        const g = ddpParams[victim].grad.toFloat32Array();
        g[0] = NaN;
        ddpParams[victim].grad.copyFrom(s.dtype === 'float32' ? g : lib.Tensor.from(g, { dtype: s.dtype }).toBits());
        if (group.rank === W - 1) {
          const z = zeroParams[victim].grad.toFloat32Array();
          z[0] = NaN;
          zeroParams[victim].grad.copyFrom(s.dtype === 'float32' ? z : lib.Tensor.from(z, { dtype: s.dtype }).toBits());
        }
      }
      if (step === STEPS) {
        // Metrics of the whole, from each rank's shard.
        const m = await allReduceMetrics(group, zero.metrics());
        const want = ddp.metrics();
        const keys = Object.keys(want);
        check(Object.keys(m).length === keys.length, `metrics: ${Object.keys(m).length} keys, expected ${keys.length}`);
        for (const k of keys) {
          const ok =
            Math.abs(m[k] - want[k]) <= 1e-12 * Math.max(1, Math.abs(want[k])) ||
            (Number.isNaN(m[k]) && Number.isNaN(want[k]));
          if (!check(ok, () => `metric ${k}: ${m[k]} vs ${want[k]}`)) break;
        }
        break;
      }
      let skipped = false;
      if (ddpScaler) {
        const a = ddpScaler.step(ddp).skipped;
        const b = s.async ? (await zeroScaler.stepAsync(zero)).skipped : zeroScaler.step(zero).skipped;
        check(a === b, `step ${step}: the DDP optimizer skipped = ${a}, ZeRO skipped = ${b}`);
        skipped = b;
        ddpScaler.update();
        zeroScaler.update();
      } else {
        ddp.step();
        if (s.async) await zero.stepAsync();
        else zero.step();
      }
      check(skipped === !!injected, `step ${step}: skipped = ${skipped}`);
      ddpSched.step();
      zeroSched.step();
      compareParams(zeroParams, ddpParams, `after step ${step}`, check);
      check(
        zero.paramGroups.every((g, i) => g.lr === ddp.paramGroups[i].lr),
        `step ${step}: the schedulers set different lrs`,
      );
    }
    // The owner's state of each param is the data-parallel optimizer's state of it.
    for (const p of zero.shardParams()) {
      const d = sameState(stateOf(zero.localOptimizer, p.name), stateOf(ddp, p.name));
      check(d === '', () => `state of '${p.name}': ${d}`);
    }
    note(
      `rank ${group.rank} owns ${zero
        .shardParams()
        .map((p) => p.name.split('.').slice(-2).join('.'))
        .join(', ')}`,
    );
  });
}

test("ZeRO-1 clips by the global norm across ranks, not the shard's own (the results differ)", async ({
  group,
  check,
}) => {
  const W = group.worldSize;
  const options = { gradClip: { type: 'globalNorm', maxNorm: 0.05 } };
  const params = buildParams(lib, { seed: 21 });
  const zero = new ZeroRedundancyOptimizer(params, (shard) => makeOptimizer(lib, 'AdamW', shard, options), { group });
  const alone = buildParams(lib, { seed: 21 });
  const mine = zero.shardParams().map((p) => alone[params.indexOf(p)]);
  const shardOnly = mine.length ? makeOptimizer(lib, 'AdamW', mine, options) : null;
  setGrads(params, 0, 'float32', (p, i) => rankGrad(p, i, 0, 0, 1));
  setGrads(alone, 0, 'float32', (p, i) => rankGrad(p, i, 0, 0, 1));
  zero.step();
  shardOnly?.step();
  const differs = mine.some((p) => sameBits(p.data, params[alone.indexOf(p)].data) !== '');
  if (W > 1 && mine.length) check(differs, 'clipping by the shard norm gave the same params: the test cannot tell');
});

test('ZeRO-1 keeps ~1/N of the optimizer state per rank (64 x 4096 + 3 small params, AdamW)', async ({
  group,
  check,
  note,
}) => {
  const W = group.worldSize;
  const specs = [...Array(64).keys()].map((i) => ({ name: `w${i}`, shape: [4096], group: 0, from: 0 }));
  specs.push(
    { name: 'a', shape: [3], group: 0, from: 0 },
    { name: 'b', shape: [1], group: 0, from: 0 },
    { name: 'c', shape: [77], group: 0, from: 0 },
  );
  const params = buildParams(lib, { specs, seed: 2 });
  const zero = new ZeroRedundancyOptimizer(params, (shard) => new lib.AdamW(shard), { group });
  const full = new lib.AdamW(buildParams(lib, { specs, seed: 2 }));
  for (const p of [...params, ...full.paramGroups[0].params])
    p.grad = lib.Tensor.from(new Float32Array(p.data.numel).fill(0.1));
  zero.step();
  full.step();
  const bytes = (sd) =>
    Object.values(sd.state).reduce(
      (n, st) => n + Object.values(st).reduce((m, v) => m + (ArrayBuffer.isView(v) ? v.byteLength : 0), 0),
      0,
    );
  const mine = bytes(zero.stateDict());
  const whole = bytes(full.stateDict());
  const all = Float64Array.of(mine);
  group.allReduce(all, 'sum');
  check(all[0] === whole, `the shards hold ${all[0]} bytes of state in all, the whole optimizer ${whole}`);
  const fraction = mine / whole;
  const total = specs.reduce((n, s) => n + numel(s.shape), 0);
  check(
    fraction <= 1 / W + 4096 / total + 1e-9,
    `rank ${group.rank} holds ${(fraction * 100).toFixed(2)}% of the state`,
  );
  note(
    `rank ${group.rank}: ${mine} of ${whole} bytes of optimizer state (${(fraction * 100).toFixed(2)}%; 1/N = ${(100 / W).toFixed(2)}%)`,
  );
});

test('ZeRO-1 with more ranks than params: ranks without a param take part and agree', async ({ group, check }) => {
  const specs = [{ name: 'only', shape: [7], group: 0, from: 0 }];
  const params = buildParams(lib, { specs, seed: 4 });
  const zero = new ZeroRedundancyOptimizer(params, (shard) => new lib.Lion(shard, { lr: 0.01 }), { group });
  check((zero.localOptimizer === null) === (group.rank !== 0), `rank ${group.rank}: localOptimizer`);
  check(zero.paramGroups[0].lr === 0.01, `every rank knows the lr: ${zero.paramGroups[0].lr}`);
  params[0].grad = lib.Tensor.from(new Float32Array(7).fill(1));
  const scaler = new lib.GradScaler();
  await scaler.stepAsync(zero);
  scaler.update();
  check(
    await sameOnEveryRank(
      group,
      params.map((p) => p.data),
    ),
    'ranks hold different params',
  );
});

test('ZeroRedundancyOptimizer: bad arguments are errors naming the problem', async ({ group, check }) => {
  const params = buildParams(lib, { seed: 6 });
  const expectError = (fn, pattern, what) => {
    try {
      fn();
      check(false, `${what}: no error`);
    } catch (e) {
      check(pattern.test(e.message), `${what}: "${e.message}"`);
    }
  };
  expectError(() => new ZeroRedundancyOptimizer(params, 'AdamW', { group }), /factory must be a function/, 'factory');
  expectError(
    () => new ZeroRedundancyOptimizer(params, (s) => new lib.AdamW(s), {}),
    /options.group must be the ProcessGroup/,
    'group',
  );
  expectError(
    () => new ZeroRedundancyOptimizer(params, (s) => new lib.AdamW(s), { group, foo: 1 }),
    /unknown option 'foo'/,
    'unknown option',
  );
  expectError(
    () => new ZeroRedundancyOptimizer([], (s) => new lib.AdamW(s), { group }),
    /empty parameter list/,
    'empty',
  );
  // The factory's result is checked on every rank before any collective.
  expectError(
    () => new ZeroRedundancyOptimizer(params, () => ({}), { group }),
    /must return a fused-optim optimizer/,
    'not an optimizer',
  );
  expectError(
    () => new ZeroRedundancyOptimizer(params, () => new lib.AdamW(params), { group }),
    /exactly the params/,
    'factory ignores the shard',
  );
  const zero = new ZeroRedundancyOptimizer(params, (s) => new lib.AdamW(s), { group });
  expectError(() => zero.addParamGroup({ params: [] }), /not supported/, 'addParamGroup');
});
