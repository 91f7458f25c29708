// Checkpoints across processes (child processes run dist/cjs, built by `npm run build:ts`;
// this suite rebuilds it when src/checkpoint/ is newer):
// - exact resume: 10 steps and a save in one process, a load into freshly initialised params
//   and 10 more steps in another, equal 20 uninterrupted steps in a third, bit for bit, for
//   every optimizer and param dtype, with a scheduler (and different thread counts);
// - a process killed with SIGKILL in the middle of a save leaves the previous checkpoint (or
//   the new one) loadable, never a broken file; its temporary file is not the checkpoint,
//   and the next successful save removes it.
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index';
import { loadCheckpoint } from '../src/index';
import { tempDir } from './support/checkpoint_files';
import type * as ModelTypes from './support/checkpoint_model.cjs';

const root = join(__dirname, '..');
const dist = join(root, 'dist', 'cjs', 'index.js');
const child = join(__dirname, 'support', 'checkpoint_model.cjs');
const model = createRequire(__filename)(child) as typeof ModelTypes;

const { dir, cleanup } = tempDir('fused-optim-ckpt-proc-');
afterAll(cleanup);

beforeAll(() => {
  // The children load dist/cjs: make sure it has this checkout's checkpoint code.
  const built = join(root, 'dist', 'cjs', 'checkpoint', 'checkpoint.js');
  const sources = readdirSync(join(root, 'src', 'checkpoint')).map(
    (f) => statSync(join(root, 'src', 'checkpoint', f)).mtimeMs,
  );
  if (!existsSync(built) || statSync(built).mtimeMs < Math.max(...sources)) {
    const r = spawnSync('npm', ['run', 'build:ts'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`npm run build:ts failed:\n${r.stdout}\n${r.stderr}`);
  }
});

function runChild(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [child, dist, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, FUSED_OPTIM_DEVICE: 'cpu', ...env },
  });
  if (r.status !== 0) throw new Error(`child ${args.slice(0, 2).join(' ')} exited ${r.status}:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!).fingerprint as ModelTypes.Fingerprint;
}

describe('exact resume across processes', () => {
  const schedulerOf: Record<ModelTypes.Kind, ModelTypes.SchedulerKind> = {
    AdamW: 'TransformerLR',
    AdamWDL: 'SequentialLR',
    Lion: 'CosineAnnealingLR',
  };
  for (const kind of model.KINDS) {
    for (const dtype of model.DTYPES) {
      it(`${kind}, ${dtype} params, ${schedulerOf[kind]}: 10 steps, save | load into fresh params, 10 steps == 20 steps`, () => {
        const options = { kind, dtype, scheduler: schedulerOf[kind] };
        const file = join(dir, `${kind}-${dtype}.safetensors`);
        const first = runChild(['train', JSON.stringify(options), '0', '10', 'save', file], {
          FUSED_OPTIM_THREADS: '1',
        });
        // Freshly initialised: other initial values, which the load must replace.
        const resumed = runChild(['train', JSON.stringify({ ...options, init: 77 }), '10', '20', 'load', file], {
          FUSED_OPTIM_THREADS: '2',
        });
        const straight = runChild(['train', JSON.stringify(options), '0', '20']);
        expect(resumed).toEqual(straight);
        expect(first).not.toEqual(straight);
        // The param without a grad before step 12 had no state at the save and has now.
        expect(Object.keys(resumed.state)).toContain('head.late.weight');
      });
    }
  }
});

describe('SIGKILL during a save', () => {
  const options = { kind: 'AdamW', dtype: 'float32', scale: 3000 } as const; // ~3.4M params: a ~70 MB file

  /** Starts a saver; resolves with it once `begin <n>` for n > after has been printed. */
  function startSaver(file: string, count = 0) {
    const proc = spawn(process.execPath, [child, dist, 'saver', JSON.stringify(options), file, String(count)], {
      env: { ...process.env, FUSED_OPTIM_DEVICE: 'cpu' },
    }) as ChildProcessWithoutNullStreams;
    const lines: string[] = [];
    let buffer = '';
    let waiting: Array<() => void> = [];
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop()!;
      lines.push(...parts);
      const w = waiting;
      waiting = [];
      w.forEach((f) => f());
    });
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const until = (pred: (lines: string[]) => boolean) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pred(lines)) resolve();
          else if (proc.exitCode !== null) reject(new Error(`saver exited ${proc.exitCode}: ${stderr}`));
          else waiting.push(check);
        };
        proc.on('exit', check);
        check();
      });
    return { proc, lines, until, exited };
  }

  const saved = (lines: string[]) => lines.filter((l) => l.startsWith('saved ')).map((l) => l.split(' ').map(Number));

  it('the checkpoint stays loadable (old or new, never mixed) and the next save removes the temporary files', async () => {
    const file = join(dir, 'killed.safetensors');
    const target = model.build(lib, { ...options, init: 5 });
    const tmpFiles = () => readdirSync(dir).filter((n) => n.startsWith('.killed.safetensors.tmp-'));
    let midSave = 0;
    let lastLoaded = 0;
    const kills = 6;
    for (let k = 0; k < kills; k++) {
      const left = tmpFiles();
      const s = startSaver(file);
      // Let it complete at least one save of its own, so there is a time to aim at.
      await s.until((l) => saved(l).length >= 1 && l[l.length - 1].startsWith('begin '));
      // That save removed what the previous kill left.
      for (const n of left) expect(existsSync(join(dir, n)), n).toBe(false);
      const ms = Math.max(20, ...saved(s.lines).map(([, , t]) => t));
      if (k % 2 === 0) {
        // Aim inside the writes: once its temporary file exists, at a random moment.
        const mine = () => tmpFiles().some((n) => n.includes(`-${s.proc.pid}-`));
        const t0 = Date.now();
        while (!mine() && Date.now() - t0 < 10 * ms) await new Promise((r) => setTimeout(r, 1));
        await new Promise((r) => setTimeout(r, Math.random() * ms * 0.4));
      } else {
        // Anywhere in the save, from reading the state on.
        await new Promise((r) => setTimeout(r, Math.random() * ms * 0.9));
      }
      s.proc.kill('SIGKILL');
      await s.exited;
      const leftovers = tmpFiles();
      if (leftovers.length > 0 && leftovers.some((n) => statSync(join(dir, n)).size > 0)) midSave++;

      // Loadable, and consistent: every value and extra.i come from the same save.
      const extra = (await loadCheckpoint(file, { params: target.params, optimizer: target.opt })) as { i: number };
      const done = saved(s.lines).map(([, i]) => i);
      const begun = s.lines.filter((l) => l.startsWith('begin ')).length;
      expect([done[done.length - 1], begun]).toContain(extra.i); // the last finished save, or the killed one if its rename happened
      for (const p of target.params) {
        const v = p.data.toFloat32Array();
        expect(v[0], p.name).toBe(extra.i);
        expect(v[v.length - 1], p.name).toBe(extra.i);
      }
      lastLoaded = extra.i;
    }
    expect(lastLoaded).toBeGreaterThan(0);
    // Random moments inside the writes: most kills must land mid-save (a temporary file with
    // data in it), or the test did not test what it says.
    expect(midSave, `kills that left a partly written temporary file, of ${kills}`).toBeGreaterThanOrEqual(2);

    // The next successful save of that path removes what the killed processes left.
    const s = startSaver(file, 1);
    expect(await s.exited).toBe(0);
    expect(tmpFiles()).toEqual([]);
    const extra = (await loadCheckpoint(file, { params: target.params, optimizer: target.opt })) as { i: number };
    expect(extra.i).toBe(1);
  }, 120_000);
});
