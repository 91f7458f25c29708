// Fuzz: a valid checkpoint mutated thousands of times (bit flips, byte writes, truncation,
// appended, inserted and deleted bytes, a random header length, edits of the header text).
// Every load must either fail with a CheckpointError, leaving params, optimizer, scheduler and
// scaler exactly as they were, or (for a mutation that changes nothing that matters) load
// exactly what was saved. Nothing may throw anything else, hang or crash the process.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index';
import { CheckpointError, loadCheckpoint, saveCheckpoint } from '../src/index';
import { splitFile, tempDir } from './support/checkpoint_files';
import type * as ModelTypes from './support/checkpoint_model.cjs';

const model = createRequire(__filename)('./support/checkpoint_model.cjs') as typeof ModelTypes;
const { dir, cleanup } = tempDir('fused-optim-fuzz-');
afterAll(cleanup);

const ITERATIONS = 3000;

class ToyScaler {
  scale = 1;
  stateDict() {
    return { scale: this.scale };
  }
  loadStateDict(sd: { scale: number }) {
    if (typeof sd?.scale !== 'number') throw new TypeError('scale must be a number');
    this.scale = sd.scale;
  }
}

describe('fuzz', () => {
  it(`${ITERATIONS} mutations of a valid checkpoint: each rejected cleanly, or loaded exactly`, async () => {
    const source = model.build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR' });
    source.train(0, 5);
    const sourceScaler = new ToyScaler();
    sourceScaler.scale = 512;
    const good = join(dir, 'good.safetensors');
    await saveCheckpoint(good, {
      params: source.params,
      optimizer: source.opt,
      scheduler: source.sched,
      scaler: sourceScaler,
      extra: { tag: 'fuzz', v: new Float64Array([1, 2]) },
    });
    const bytes = readFileSync(good);
    const headerEnd = bytes.length - splitFile(bytes).data.length;
    const expected = { ...model.fingerprint(source), scaler: sourceScaler.stateDict() };

    const target = model.build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', init: 9 });
    target.train(0, 2);
    const scaler = new ToyScaler();
    const state = () => ({ ...model.fingerprint(target), scaler: scaler.stateDict() });
    const pristine = state();

    // A seeded generator, so a failure can be replayed.
    const next = model.rng(20240611);
    const int = (n: number) => Math.floor(next() * n);
    const mutations: Array<[string, (b: Buffer) => Buffer]> = [
      ['flip a bit', (b) => ((b[int(b.length)] ^= 1 << int(8)), b)],
      ['flip a bit in the header', (b) => ((b[int(headerEnd)] ^= 1 << int(8)), b)],
      [
        'flip bits in the data',
        (b) => {
          for (let i = 0, n = 1 + int(4); i < n; i++) b[headerEnd + int(b.length - headerEnd)] ^= 1 << int(8);
          return b;
        },
      ],
      ['write a random byte', (b) => ((b[int(b.length)] = int(256)), b)],
      ['write a random header byte', (b) => ((b[8 + int(headerEnd - 8)] = int(256)), b)],
      ['truncate', (b) => b.subarray(0, int(b.length))],
      ['append bytes', (b) => Buffer.concat([b, Buffer.alloc(1 + int(64), int(256))])],
      [
        'insert bytes',
        (b) => {
          const at = int(b.length);
          return Buffer.concat([b.subarray(0, at), Buffer.alloc(1 + int(16), int(256)), b.subarray(at)]);
        },
      ],
      [
        'delete bytes',
        (b) => {
          const at = int(b.length);
          return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(16))]);
        },
      ],
      ['random header length', (b) => (b.writeBigUInt64LE(BigInt(int(2 ** 30)) * BigInt(int(2 ** 30) + 1), 0), b)],
      [
        'header length off by a little',
        (b) => (b.writeBigUInt64LE(BigInt(Math.max(0, headerEnd - 8 + int(33) - 16)), 0), b),
      ],
      [
        'swap two header characters',
        (b) => {
          const i = 8 + int(headerEnd - 8),
            j = 8 + int(headerEnd - 8);
          const t = b[i];
          b[i] = b[j];
          b[j] = t;
          return b;
        },
      ],
      [
        'change a digit in the header',
        (b) => {
          const digits: number[] = [];
          for (let i = 8; i < headerEnd; i++) if (b[i] >= 0x30 && b[i] <= 0x39) digits.push(i);
          b[digits[int(digits.length)]] = 0x30 + int(10);
          return b;
        },
      ],
    ];
    const outcomes: Record<string, { rejected: number; loaded: number }> = {};
    const file = join(dir, 'mutant.safetensors');
    for (let it = 0; it < ITERATIONS; it++) {
      const [what, mutate] = mutations[it % mutations.length];
      const mutant = mutate(Buffer.from(bytes));
      writeFileSync(file, mutant);
      let error: unknown;
      try {
        await loadCheckpoint(file, { params: target.params, optimizer: target.opt, scheduler: target.sched, scaler });
      } catch (e) {
        error = e;
      }
      const o = (outcomes[what] ??= { rejected: 0, loaded: 0 });
      if (error === undefined) {
        // Only a mutation that leaves every checked byte as it was can load: it must load the original.
        o.loaded++;
        expect(state(), `iteration ${it} (${what}) loaded something else`).toEqual(expected);
        // Back to the pristine target for the next round.
        const reset = model.build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', init: 9 });
        reset.train(0, 2);
        Object.assign(target, reset);
        scaler.scale = 1;
        expect(state()).toEqual(pristine);
      } else {
        o.rejected++;
        if (!(error instanceof CheckpointError))
          throw new Error(`iteration ${it} (${what}) threw a ${(error as Error)?.name}: ${(error as Error)?.message}`);
        expect(error.file).toBe(file);
        expect(state(), `iteration ${it} (${what}) changed something`).toEqual(pristine);
      }
    }
    expect(state()).toEqual(pristine);
    const total = Object.values(outcomes).reduce((a, o) => a + o.rejected + o.loaded, 0);
    expect(total).toBe(ITERATIONS);
    // Nearly every mutation is caught; the few that load are no-ops (a bit flipped back, a
    // digit replaced by itself, two equal characters swapped).
    const loaded = Object.values(outcomes).reduce((a, o) => a + o.loaded, 0);
    expect(loaded, JSON.stringify(outcomes)).toBeLessThan(ITERATIONS * 0.1);
  }, 300_000);
});
