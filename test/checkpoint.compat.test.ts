// Checkpoints written by earlier versions still load: format version 1 (fused-optim 0.1.0;
// test/fixtures/gen_checkpoint_v1_fixtures.cjs), with its own integrity checks (the
// manifest's CRC-32, its table of tensors against the header).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index';
import { CheckpointError, loadCheckpoint } from '../src/index';
import { editHeader, joinFile, splitFile, tempDir } from './support/checkpoint_files';
import type * as ModelTypes from './support/checkpoint_model.cjs';

const model = createRequire(__filename)('./support/checkpoint_model.cjs') as typeof ModelTypes;
const { build, fingerprint } = model;
const { dir, cleanup } = tempDir();
afterAll(cleanup);

const FIXTURES = [
  ['AdamW', 'bfloat16', 'TransformerLR'],
  ['Lion', 'float32', 'CosineAnnealingLR'],
] as const;
const fixture = (kind: string, dtype: string) =>
  join(__dirname, 'fixtures', `checkpoint_v1_${kind.toLowerCase()}_${dtype}.safetensors`);

describe('format version 1 (fused-optim 0.1.0)', () => {
  for (const [kind, dtype, scheduler] of FIXTURES) {
    it(`${kind}, ${dtype}, ${scheduler}: loads, equals 10 steps of this version, and resumes exactly`, async () => {
      const options = { kind, dtype, scheduler } as const;
      const b = build(lib, { ...options, init: 5 });
      const extra = await loadCheckpoint(fixture(kind, dtype), {
        params: b.params,
        optimizer: b.opt,
        scheduler: b.sched,
      });
      expect(extra).toEqual({ step: 10, note: 'written by fused-optim 0.1.0' });
      const a = build(lib, options);
      a.train(0, 10);
      expect(fingerprint(b)).toEqual(fingerprint(a));
      a.train(10, 20);
      b.train(10, 20);
      expect(fingerprint(b)).toEqual(fingerprint(a));
    });
  }

  it("rejects what version 1's checks catch: the manifest's CRC, its table against the header", async () => {
    const file = fixture('AdamW', 'bfloat16');
    const rejects = async (f: string, message: RegExp, code: string) => {
      const b = build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', init: 5 });
      const before = fingerprint(b);
      const e = await loadCheckpoint(f, { params: b.params, optimizer: b.opt, scheduler: b.sched }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as Error).message).toMatch(message);
      expect((e as CheckpointError).code).toBe(code);
      expect(fingerprint(b)).toEqual(before);
    };
    const { headerText, data } = splitFile(readFileSync(file));
    const t1 = join(dir, 'v1-manifest.safetensors');
    writeFileSync(t1, joinFile(headerText.replace('\\"weight_decay\\":0.1', '\\"weight_decay\\":0.3'), data));
    await rejects(t1, /the manifest fails its checksum/, 'ChecksumMismatch');
    const t2 = join(dir, 'v1-dtype.safetensors');
    editHeader(file, (h) => (h['optimizer.state.encoder.layers.1.output.bias.exp_avg'].dtype = 'I32'), t2);
    await rejects(t2, /is I32 \[5\] in the header but F32 \[5\] in the manifest/, 'InvalidManifest');
    const t3 = join(dir, 'v1-data.safetensors');
    const flipped = readFileSync(file);
    flipped[flipped.length - 3] ^= 4;
    writeFileSync(t3, flipped);
    await rejects(t3, /fails its checksum \(stored crc32 [0-9a-f]{8}, computed/, 'ChecksumMismatch');
  });
});
