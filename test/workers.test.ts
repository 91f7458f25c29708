// The addon in worker_threads (issue 13 item 1). Each scenario runs in a fresh process
// (test/support/worker_training.cjs over dist/cjs), so a crash of the addon fails the test
// instead of the test runner:
// - the main thread and 4 workers, each stepping an optimizer of its own at the same time,
//   end bit for bit where the same five runs end when done one after another;
// - workers that exit (with live tensors and optimizers, with a stepAsync() in flight, or
//   terminated in the middle of a step loop) leave the main thread and the other workers
//   working, and their results unchanged.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdamW, Parameter, Tensor } from '../src/index';

const root = join(__dirname, '..');
const dist = join(root, 'dist', 'cjs', 'index.js');
const script = join(__dirname, 'support', 'worker_training.cjs');

interface Run {
  fingerprint: string;
  first: number;
}

function scenario<T>(name: string): T {
  const r = spawnSync(process.execPath, [script, dist, name], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, FUSED_OPTIM_DEVICE: 'cpu' },
  });
  expect(r.status, `scenario ${name} exited ${r.status} (${r.signal ?? 'no signal'}):\n${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

describe('worker threads', () => {
  it('4 workers and the main thread stepping at once match the same runs done one after another, bit for bit', () => {
    const { concurrent, serial } = scenario<{ concurrent: Run[]; serial: Run[] }>('concurrent');
    expect(concurrent).toHaveLength(5);
    expect(concurrent.map((r) => r.fingerprint)).toEqual(serial.map((r) => r.fingerprint));
    // Five different runs, each of which moved its params.
    expect(new Set(serial.map((r) => r.fingerprint)).size).toBe(5);
    for (const r of serial) expect(Number.isFinite(r.first)).toBe(true);
  });

  it('workers that exit (objects alive, a stepAsync in flight, terminated mid-loop) leave the others working', async () => {
    const r = scenario<{
      earlyExitCodes: number[];
      main: { keep: number[]; stepped: number[] };
      stayers: Run[];
      serial: Run[];
    }>('exits');
    // process.exit(0) twice, terminate() three times (exit code 1).
    expect(r.earlyExitCodes).toEqual([0, 0, 1, 1, 1]);
    expect(r.stayers.map((s) => s.fingerprint)).toEqual(r.serial.map((s) => s.fingerprint));
    expect(r.main.keep).toEqual([1, 2, 3]);
    // The main thread's two steps after the exits, against the same two steps here.
    const p = new Parameter(Tensor.from([0.5, -0.5], { device: 'cpu' }));
    p.grad = Tensor.from([1, 1], { device: 'cpu' });
    const opt = new AdamW([p], { lr: 0.1 });
    opt.step();
    await opt.stepAsync();
    expect(r.main.stepped).toEqual(Array.from(p.data.toFloat32Array()));
  });
});
