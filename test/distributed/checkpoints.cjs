// mpirun -np N node test/distributed/checkpoints.cjs <results.json> <mode> <dir>
//   save:    steps [0, 10) of a ZeRO-1 AdamW run (bf16 and fp32 params, param groups, a
//            scheduler, a GradScaler), a sharded checkpoint in <dir>/sharded and a
//            consolidated one in <dir>/whole.safetensors
//   resume:  fresh params and optimizer, loadShardedCheckpoint(<dir>/sharded or the
//            consolidated file), steps [10, 20); equal to 20 straight steps of one process
//   reject:  corrupt, missing and foreign shard files are refused on every rank, and
//            nothing changes
//   killsave: the last rank is killed while a second save is written (the job dies; the
//            next resume must find the first save intact)
//
// Every rank's grads are the whole batch's (the same on every rank), so their average is
// exact for any power-of-two number of ranks: the run is the same with 1, 2 or 4 ranks,
// and a resume with another number of ranks must continue it exactly.
'use strict';
const {
  copyFileSync,
  cpSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { lib, distributed, test, main, sameBits, hashTensors } = require('./harness.cjs');
const { buildParams, meanGrad, BATCH } = require('./model.cjs');

const {
  ZeroRedundancyOptimizer,
  allReduceGrads,
  saveShardedCheckpoint,
  loadShardedCheckpoint,
  saveConsolidatedCheckpoint,
} = distributed;

const mode = process.argv[3];
const dir = process.argv[4];

const SPECS = [
  { name: 'embed.weight', shape: [70001], group: 0, dtype: 'bfloat16' },
  { name: 'layers.0.weight', shape: [37, 3], group: 0, dtype: 'float32' },
  { name: 'layers.0.bias', shape: [5], group: 1, dtype: 'float32' },
  { name: 'layers.1.weight', shape: [4099], group: 0, dtype: 'bfloat16' },
  { name: 'layers.1.bias', shape: [3], group: 1, dtype: 'float32' },
  { name: 'head.weight', shape: [513], group: 0, dtype: 'float32' },
];
const GROUPS = [
  { lr: 0.02, weightDecay: 0.1 },
  { lr: 0.01, weightDecay: 0 },
];

function build({ group, seed, sharded = true }) {
  const params = [];
  for (const dtype of ['float32', 'bfloat16']) {
    const specs = SPECS.filter((s) => s.dtype === dtype);
    const built = buildParams(lib, { dtype, seed: seed + (dtype === 'float32' ? 0 : 1), specs });
    built.forEach((p, i) => (params[SPECS.indexOf(specs[i])] = p));
  }
  const groups = GROUPS.map((g, gi) => ({ ...g, params: params.filter((_, i) => SPECS[i].group === gi) }));
  const factory = (shard) => new lib.AdamW(shard, { betas: [0.9, 0.98], gradClip: { type: 'globalNorm', maxNorm: 1 } });
  const opt = sharded
    ? new ZeroRedundancyOptimizer(groups, factory, { group, bucketBytes: 16 * 1024 })
    : factory(groups);
  const scheduler = new lib.LinearLR(opt, { startFactor: 0.2, totalIters: 12 });
  const scaler = new lib.GradScaler({ initScale: 2 ** 8, growthInterval: 4 });
  return { params, opt, scheduler, scaler };
}

// The whole batch's grad of every param at `step`, scaled (fp32 grads).
function setGrads(m, step) {
  m.params.forEach((p, i) => {
    const g = meanGrad(p.data.toFloat32Array(), i, step, 0, BATCH).map((x) => x * m.scaler.getScale());
    p.grad = lib.Tensor.from(g, { shape: p.data.shape });
  });
}

async function train(m, group, from, to) {
  for (let step = from; step < to; step++) {
    setGrads(m, step);
    if (group) await allReduceGrads(m.params, { group });
    if (group) await m.scaler.stepAsync(m.opt);
    else m.scaler.step(m.opt);
    m.scaler.update();
    m.scheduler.step();
  }
}

// Params, per-param state (by name) and the scheduler, as one hash per part.
async function fingerprint(m, group) {
  const stateOf = (opt) => {
    const sd = opt.stateDict();
    const flat = opt.paramGroups.flatMap((g) => g.params);
    const out = {};
    for (const [i, s] of Object.entries(sd.state)) {
      const parts = Object.keys(s)
        .sort()
        .map((k) => (ArrayBuffer.isView(s[k]) ? `${k}:${hashTensors([lib.Tensor.from(s[k])])}` : `${k}:${s[k]}`));
      out[flat[Number(i)].name] = parts.join(',');
    }
    return out;
  };
  let state = {};
  if (m.opt instanceof ZeroRedundancyOptimizer) {
    const mine = m.opt.localOptimizer ? stateOf(m.opt.localOptimizer) : {};
    const all = await require('../../dist/cjs/distributed/exchange.js').allGatherJson(group, mine, 'fingerprint');
    for (const d of all) Object.assign(state, d);
  } else state = stateOf(m.opt);
  const sorted = Object.fromEntries(
    Object.keys(state)
      .sort()
      .map((k) => [k, state[k]]),
  );
  return {
    params: hashTensors(m.params.map((p) => p.data)),
    state: sorted,
    lr: m.opt.paramGroups.map((g) => g.lr),
    scheduler: JSON.stringify(m.scheduler.stateDict()),
    scale: m.scaler.getScale(),
  };
}

function sameFingerprint(a, b, check, what) {
  for (const k of ['params', 'lr', 'scheduler', 'scale'])
    check(
      JSON.stringify(a[k]) === JSON.stringify(b[k]),
      () => `${what}: ${k} differs (${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])})`,
    );
  const names = new Set([...Object.keys(a.state), ...Object.keys(b.state)]);
  for (const n of names) check(a.state[n] === b.state[n], () => `${what}: the state of '${n}' differs`);
}

if (mode === 'save') {
  test('save: 10 steps, then a sharded and a consolidated checkpoint', async ({ group, check }) => {
    const m = build({ group, seed: 1 });
    await train(m, group, 0, 10);
    await saveShardedCheckpoint(join(dir, 'sharded'), {
      optimizer: m.opt,
      scheduler: m.scheduler,
      scaler: m.scaler,
      extra: { step: 10, note: 'sharded', data: Float64Array.of(1.5, -0) },
    });
    await saveConsolidatedCheckpoint(join(dir, 'whole.safetensors'), {
      optimizer: m.opt,
      scheduler: m.scheduler,
      scaler: m.scaler,
      extra: { step: 10, note: 'whole' },
    });
    await group.barrierAsync(); // rank 0 may still be removing files
    const files = readdirSync(join(dir, 'sharded'));
    check(files.includes('manifest.json'), `files: ${files}`);
    check(files.filter((f) => f.startsWith('shard-')).length === group.worldSize, `files: ${files}`);
    await group.barrierAsync(); // before anyone starts the next save
    // A second save replaces the first one's files.
    await saveShardedCheckpoint(join(dir, 'sharded'), {
      optimizer: m.opt,
      scheduler: m.scheduler,
      scaler: m.scaler,
      extra: { step: 10, note: 'sharded', data: Float64Array.of(1.5, -0) },
    });
    await group.barrierAsync();
    const after = readdirSync(join(dir, 'sharded')).filter((f) => !f.startsWith('.'));
    check(after.length === group.worldSize + 2, `after a second save: ${after}`);
    if (group.rank === 0)
      writeFileSync(join(dir, 'saved-fingerprint.json'), JSON.stringify(await fingerprint(m, group)));
    else await fingerprint(m, group);
  });
}

if (mode === 'resume') {
  for (const source of ['sharded', 'whole.safetensors']) {
    test(`resume from the ${source === 'sharded' ? 'sharded' : 'consolidated'} checkpoint, 10 more steps == 20 straight steps of one process`, async ({
      group,
      check,
    }) => {
      const m = build({ group, seed: 77 }); // other initial values, which the load replaces
      const extra = await loadShardedCheckpoint(join(dir, source), {
        optimizer: m.opt,
        scheduler: m.scheduler,
        scaler: m.scaler,
      });
      check(extra && extra.step === 10, () => `extra: ${JSON.stringify(extra)}`);
      if (source === 'sharded') check(extra.data instanceof Float64Array && Object.is(extra.data[1], -0), 'extra.data');
      const loaded = await fingerprint(m, group);
      const saved = JSON.parse(readFileSync(join(dir, 'saved-fingerprint.json'), 'utf8'));
      sameFingerprint(loaded, saved, check, 'right after the load');
      await train(m, group, 10, 20);
      const straight = build({ group, seed: 1, sharded: false });
      await train(straight, null, 0, 20);
      sameFingerprint(await fingerprint(m, group), await fingerprint(straight, group), check, 'after 20 steps');
    });
  }
}

function expectRejected(check, e, pattern, what) {
  check(e && e.name === 'CheckpointError', () => `${what}: ${e ? e.stack : 'no error'}`);
  check(e && pattern.test(e.message), () => `${what}: message "${e && e.message}" does not match ${pattern}`);
}

if (mode === 'reject') {
  test('corrupt, missing and foreign shards are refused on every rank, and nothing changes', async ({
    group,
    check,
  }) => {
    const m = build({ group, seed: 5 });
    await train(m, group, 0, 2);
    const before = await fingerprint(m, group);
    const work = group.rank === 0 ? mkdtempSync(join(tmpdir(), 'fo-dist-reject-')) : null;
    const shared = await require('../../dist/cjs/distributed/exchange.js').broadcastJson(group, work, 0, 'dir');
    const src = join(dir, 'sharded');
    const manifest = JSON.parse(readFileSync(join(src, 'manifest.json'), 'utf8'));
    const last = manifest.shards[manifest.shards.length - 1].file;
    const cases = [
      {
        what: 'a flipped byte in the last shard',
        pattern: /rank \d+: .*checksum|corrupt/,
        make: (d) => {
          const f = join(d, last);
          const b = readFileSync(f);
          b[b.length - 100] ^= 0xff;
          writeFileSync(f, b);
        },
      },
      { what: 'a missing shard', pattern: /is missing/, make: (d) => unlinkSync(join(d, manifest.shards[0].file)) },
      {
        what: "another save's shard under this save's name",
        pattern: /bytes but the manifest says|not shard/,
        make: (d) => copyFileSync(join(d, manifest.meta.file), join(d, last)),
      },
      {
        what: 'a missing manifest',
        pattern: /manifest\.json|ENOENT/,
        make: (d) => unlinkSync(join(d, 'manifest.json')),
      },
    ];
    for (const [k, c] of cases.entries()) {
      const d = join(shared, String(k));
      if (group.rank === 0) {
        cpSync(src, d, { recursive: true });
        c.make(d);
      }
      await group.barrierAsync();
      let error;
      await loadShardedCheckpoint(d, { optimizer: m.opt, scheduler: m.scheduler, scaler: m.scaler }).catch(
        (e) => (error = e),
      );
      expectRejected(check, error, c.pattern, c.what);
      check(error && /nothing was changed/.test(error.message), () => `${c.what}: ${error && error.message}`);
      sameFingerprint(await fingerprint(m, group), before, check, `after refusing ${c.what}`);
    }
    await group.barrierAsync();
    if (group.rank === 0) rmSync(shared, { recursive: true, force: true });
    // Still trainable, and the good checkpoint still loads.
    await loadShardedCheckpoint(src, { optimizer: m.opt, scheduler: m.scheduler, scaler: m.scaler });
    const saved = JSON.parse(readFileSync(join(dir, 'saved-fingerprint.json'), 'utf8'));
    sameFingerprint(await fingerprint(m, group), saved, check, 'the good checkpoint after the refusals');
  });
}

if (mode === 'killsave') {
  test('a rank killed during a save', async ({ group }) => {
    const m = build({ group, seed: 1 });
    await train(m, group, 0, 11);
    if (group.rank === group.worldSize - 1) {
      // Killed just before its shard file would be renamed into place.
      require('node:fs').promises.rename = async () => process.kill(process.pid, 'SIGKILL');
    }
    await saveShardedCheckpoint(join(dir, 'sharded'), { optimizer: m.opt, scheduler: m.scheduler, scaler: m.scaler });
    // Not reached: the job ends when the killed rank dies.
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
