// fused-optim/distributed under MPI: the rank scripts of test/distributed/ run under
// `mpirun --oversubscribe -np 2` and `-np 4` (one machine, shared memory, CPU), each case's
// outcome on every rank reported here as a test. Skipped, with the reason printed, where
// mpirun or the MPI module (built when mpicc is found) is missing.
//
// - suite.cjs: collectives (every op, sync and async, odd sizes, Tensors), DDP against one
//   process on the whole batch, ZeRO-1 against DDP, with 2 and with 4 ranks;
// - checkpoints.cjs: save with 2 ranks, resume with 2, 4 and 1 (sharded and consolidated),
//   refusals of broken checkpoints, a rank killed during a save;
// - faults.cjs: a rank killed, throwing or hanging ends the job with a clear message;
// - a few of them again over TCP on the loopback interface (--mca btl tcp,self).
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const scripts = join(__dirname, 'distributed');
const mpiModule = join(root, 'native', 'mpi', 'build', 'Release', 'fused_optim_mpi.node');

function missing(): string | undefined {
  const v = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return 'mpirun is not on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)';
  if (!existsSync(mpiModule))
    return `the MPI module ${mpiModule} is not built (npm run build:mpi builds it where mpicc is on PATH)`;
  return undefined;
}

const skipReason = missing();
if (skipReason) console.warn(`test/distributed.mpi.test.ts: skipped: ${skipReason}`);

// Open MPI refuses to run as root without these (CI runs as root).
const mpiEnv = {
  ...process.env,
  OMPI_ALLOW_RUN_AS_ROOT: '1',
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  FUSED_OPTIM_DEVICE: 'cpu',
  FUSED_OPTIM_THREADS: '1',
};

function mpirun(
  np: number,
  args: string[],
  timeoutMs = 300_000,
  { mpiArgs = [] as string[], env = {} as Record<string, string> } = {},
): SpawnSyncReturns<string> & { ms: number } {
  const started = Date.now();
  const r = spawnSync('mpirun', ['--oversubscribe', ...mpiArgs, '-np', String(np), process.execPath, ...args], {
    encoding: 'utf8',
    env: { ...mpiEnv, ...env },
    timeout: timeoutMs,
  });
  return { ...r, ms: Date.now() - started };
}

interface CaseResult {
  name: string;
  ranks: Array<{ rank: number; failures: string[]; notes: string[]; ms: number }>;
}

function listCases(script: string, mode: string[] = []): Array<{ name: string; minRanks: number; maxRanks: number }> {
  const r = spawnSync(process.execPath, [join(scripts, script), '--list', ...mode], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`listing ${script} failed:\n${r.stderr}`);
  const cases = JSON.parse(r.stdout) as Array<{ name: string; minRanks: number; maxRanks: number | null }>;
  return cases.map((c) => ({ ...c, maxRanks: c.maxRanks ?? Infinity })); // JSON has no Infinity
}

/** Runs script under mpirun; its results by case name (throws with the output on failure). */
function runRanks(
  np: number,
  script: string,
  out: string,
  mode: string[] = [],
  options?: Parameters<typeof mpirun>[3],
): Map<string, CaseResult> {
  const r = mpirun(np, [join(scripts, script), out, ...mode], 300_000, options);
  if (process.env.FO_DIST_TEST_PROGRESS) console.log(`mpirun -np ${np} ${script} ${mode[0] ?? ''}: ${r.ms} ms`);
  if (r.status !== 0 || !existsSync(out))
    throw new Error(
      `mpirun -np ${np} ${script} ${mode.join(' ')} exited ${r.status} (${r.signal ?? ''}):\n${r.stdout}\n${r.stderr}`,
    );
  const { results } = JSON.parse(readFileSync(out, 'utf8')) as { results: CaseResult[] };
  return new Map(results.map((c) => [c.name, c]));
}

function expectPassed(results: Map<string, CaseResult> | undefined, name: string): void {
  const c = results?.get(name);
  expect(c, `case "${name}" did not run`).toBeDefined();
  const failures = c!.ranks.flatMap((r) => r.failures.map((f) => `rank ${r.rank}: ${f}`));
  expect(failures).toEqual([]);
  // What the cases measured (bounds, memory), with FO_DIST_TEST_PROGRESS=1.
  const notes = c!.ranks.flatMap((r) => r.notes);
  if (notes.length && process.env.FO_DIST_TEST_PROGRESS) console.log(`  ${name}: ${[...new Set(notes)].join('; ')}`);
}

const work = mkdtempSync(join(tmpdir(), 'fused-optim-mpi-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  if (skipReason) return;
  // The ranks load dist/cjs: make sure it has this checkout's code.
  const built = join(root, 'dist', 'cjs', 'distributed', 'index.js');
  const newest = Math.max(
    ...readdirSync(join(root, 'src', 'distributed')).map((f) => statSync(join(root, 'src', 'distributed', f)).mtimeMs),
  );
  if (!existsSync(built) || statSync(built).mtimeMs < newest) {
    const r = spawnSync('npm', ['run', 'build:ts'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`npm run build:ts failed:\n${r.stdout}\n${r.stderr}`);
  }
});

for (const np of [2, 4]) {
  describe.skipIf(skipReason !== undefined)(`${np} ranks: collectives, DDP, ZeRO-1`, () => {
    let results: Map<string, CaseResult> | undefined;
    beforeAll(() => {
      results = runRanks(np, 'suite.cjs', join(work, `suite-${np}.json`));
    });
    const cases = skipReason ? [] : listCases('suite.cjs').filter((c) => np >= c.minRanks && np <= c.maxRanks);
    for (const c of cases) it(c.name, () => expectPassed(results, c.name));
  });
}

// The same code over Open MPI's TCP transport on the loopback interface (what several machines
// would use, minus the network): a few cases and a killed rank.
describe.skipIf(skipReason !== undefined)(
  '2 ranks over TCP (loopback): collectives, DDP, ZeRO-1, a killed rank',
  () => {
    const tcp = { mpiArgs: ['--mca', 'btl', 'tcp,self'] };
    const filter = '^(allReduce sum|reduceScatter|DDP AdamW, float32 params, ordered|ZeRO-1 AdamW, float32)';
    let results: Map<string, CaseResult> | undefined;
    beforeAll(() => {
      results = runRanks(2, 'suite.cjs', join(work, 'tcp.json'), [], { ...tcp, env: { FO_DIST_TEST_FILTER: filter } });
    });
    const cases = skipReason ? [] : listCases('suite.cjs').filter((c) => new RegExp(filter).test(c.name));
    for (const c of cases) it(c.name, () => expectPassed(results, c.name));
    it('a rank killed with SIGKILL: the other ends within seconds, non-zero, saying what it waited in', () => {
      const r = mpirun(2, [join(scripts, 'faults.cjs'), 'kill'], 60_000, tcp);
      expect(r.status).not.toBe(0);
      expect(r.ms).toBeLessThan(30_000);
      expect(`${r.stdout}${r.stderr}`).toMatch(/rank 0 of 2: terminated by SIGTERM while waiting in allReduce #\d+/);
    });
  },
);

describe.skipIf(skipReason !== undefined)('sharded checkpoints: save with 2 ranks, resume with 2, 4 and 1', () => {
  const dir = join(work, 'ckpt');
  const runs = new Map<string, Map<string, CaseResult>>();
  beforeAll(() => {
    runs.set('save', runRanks(2, 'checkpoints.cjs', join(work, 'save.json'), ['save', dir]));
    for (const np of [2, 4, 1])
      runs.set(`resume-${np}`, runRanks(np, 'checkpoints.cjs', join(work, `resume-${np}.json`), ['resume', dir]));
    runs.set('reject', runRanks(2, 'checkpoints.cjs', join(work, 'reject.json'), ['reject', dir]));
  });
  const list = (mode: string) => (skipReason ? [] : listCases('checkpoints.cjs', [mode]));
  for (const c of list('save')) it(`2 ranks: ${c.name}`, () => expectPassed(runs.get('save'), c.name));
  for (const np of [2, 4, 1])
    for (const c of list('resume'))
      it(`saved with 2 ranks, ${np} now: ${c.name}`, () => expectPassed(runs.get(`resume-${np}`), c.name));
  for (const c of list('reject')) it(`2 ranks: ${c.name}`, () => expectPassed(runs.get('reject'), c.name));

  it('a rank killed while a save is written leaves the previous checkpoint whole: the resume continues it exactly', () => {
    const copy = join(work, 'ckpt-killed');
    cpSync(dir, copy, { recursive: true });
    const before = readFileSync(join(copy, 'sharded', 'manifest.json'), 'utf8');
    const r = mpirun(2, [join(scripts, 'checkpoints.cjs'), join(work, 'kill.json'), 'killsave', copy], 120_000);
    expect(r.status).not.toBe(0);
    expect(readFileSync(join(copy, 'sharded', 'manifest.json'), 'utf8')).toBe(before);
    const resumed = runRanks(2, 'checkpoints.cjs', join(work, 'resume-after-kill.json'), ['resume', copy]);
    for (const c of listCases('checkpoints.cjs', ['resume'])) expectPassed(resumed, c.name);
  });
});

describe.skipIf(skipReason !== undefined)('faults: the other ranks stop with a clear message, never hang', () => {
  const faults = join(scripts, 'faults.cjs');
  it('a rank killed with SIGKILL: every rank ends within seconds, non-zero, saying what it waited in', () => {
    const r = mpirun(2, [faults, 'kill'], 60_000);
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(30_000);
    const out = `${r.stdout}${r.stderr}`;
    expect(out).toMatch(/rank 1 .*exited on signal 9/);
    expect(out).toMatch(
      /rank 0 of 2: terminated by SIGTERM while waiting in allReduce #\d+ \(1024 Float32Array, sum\): the step the failed rank never reaches/,
    );
  });

  it('a rank that throws: its error is printed, the job is aborted at once', () => {
    const r = mpirun(4, [faults, 'throw'], 60_000);
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(30_000);
    const out = `${r.stdout}${r.stderr}`;
    expect(out).toMatch(
      /rank 3 of 4: exiting with code 1 before destroy\(\), after an uncaught error:\nError: rank 3 fails on purpose/,
    );
    for (const rank of [0, 1, 2])
      expect(out).toMatch(new RegExp(`rank ${rank} of 4: terminated by SIGTERM while waiting in allReduce #\\d+`));
  });

  it('a rank that hangs: the others time out (2 s here) and abort the job, naming the collective', () => {
    const r = mpirun(2, [faults, 'hang'], 60_000);
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(30_000);
    const out = `${r.stdout}${r.stderr}`;
    expect(out).toMatch(
      /rank 0 of 2: allReduce #\d+ \(1024 Float32Array, sum\): the step the failed rank never reaches has waited 2\.\d s \(the timeout\) for the other ranks/,
    );
  });
});

describe.skipIf(skipReason !== undefined)(
  'the benchmark (bench/distributed.mjs --quick): a smoke test, no timing asserted',
  () => {
    it('runs under mpirun -np 2 and reports every figure, finite and positive', () => {
      const r = mpirun(2, [join(root, 'bench', 'distributed.mjs'), '--quick', '--json', '--reps', '1'], 120_000);
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.world).toBe(2);
      expect(out.allReduce.rows.length).toBeGreaterThanOrEqual(5);
      for (const row of out.allReduce.rows) for (const k of ['ms', 'algbw', 'busbw']) expect(row[k]).toBeGreaterThan(0);
      for (const k of ['DDP', 'ZeRO-1']) {
        expect(out.zero[k].stepMs).toBeGreaterThan(0);
        expect(out.zero[k].stateBytesThisRank).toBeGreaterThan(0);
      }
      // ZeRO-1 holds about half the state per rank at N = 2 (the greedy partition's balance).
      expect(out.zero['ZeRO-1'].stateBytesMaxRank / out.zero.DDP.stateBytesThisRank).toBeLessThan(0.75);
      expect(out.zero['ZeRO-1'].stateBytesAllRanks).toBe(out.zero.DDP.stateBytesThisRank);
    });
  },
);

describe.skipIf(skipReason !== undefined)("the README's example (examples/data-parallel.mjs)", () => {
  it('learns, and its ZeRO-1 run prints the same losses as its data-parallel run, then checkpoints', () => {
    const example = join(root, 'examples', 'data-parallel.mjs');
    const ddp = mpirun(2, [example, '--steps', '30']);
    const zero = mpirun(2, [example, '--steps', '30', '--zero', '--checkpoint', join(work, 'example')]);
    expect(ddp.status, ddp.stderr).toBe(0);
    expect(zero.status, zero.stderr).toBe(0);
    const losses = (out: string) => [...out.matchAll(/step \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses(ddp.stdout)).toHaveLength(3);
    expect(losses(zero.stdout)).toEqual(losses(ddp.stdout));
    expect(losses(ddp.stdout)[2]).toBeLessThan(losses(ddp.stdout)[0] / 2);
    expect(readdirSync(join(work, 'example'))).toContain('manifest.json');
  });
});
