// The native header parser (native/checkpoint/header_parser.h) against the TypeScript one
// (parseHeader in src/checkpoint/safetensors_header.ts), which stays the reference: wherever
// the native one answers, the TypeScript one accepts the header with the same tensors, in the
// same order, and the same metadata; wherever the TypeScript one rejects, the native one
// declines (and the reader then reports the TypeScript one's error). Checked on valid headers,
// legal but unusual ones, and thousands of mutations of a checkpoint's header.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdamW, Parameter, Tensor, saveCheckpoint } from '../src/index';
import { parseHeader } from '../src/checkpoint/safetensors_header';
import { native } from '../src/native';
import { tempDir } from './support/checkpoint_files';
import { rng } from './support/random';

const { dir, cleanup } = tempDir('fused-optim-header-');
afterAll(cleanup);

type Outcome = { ok: true; tensors: unknown[]; metadata: Record<string, string> } | { ok: false };

function typescript(header: Uint8Array, fileSize: number): Outcome {
  try {
    const h = parseHeader(header, fileSize);
    return { ok: true, tensors: [...h.tensors], metadata: h.metadata };
  } catch {
    return { ok: false };
  }
}

async function nativeOutcome(header: Uint8Array, fileSize: number): Promise<Outcome | null> {
  const c = await native().parseSafetensorsHeader(header, fileSize);
  if (!c) return null;
  const dtypes = native().safetensorsDTypes();
  const tensors: unknown[] = [];
  let at = 0;
  for (let i = 0; i < c.dtypes.length; i++) {
    const name = c.names.slice(at, (at = c.nameEnds[i]));
    const shape = Array.from(c.dims.subarray(i === 0 ? 0 : c.shapeEnds[i - 1], c.shapeEnds[i]));
    tensors.push([name, { dtype: dtypes[c.dtypes[i]], shape, dataOffsets: [c.begins[i], c.ends[i]] }]);
  }
  const metadata: Record<string, string> = {};
  for (let i = 0; i < c.metadata.length; i += 2) metadata[c.metadata[i]] = c.metadata[i + 1];
  return { ok: true, tensors, metadata };
}

/** Native answers agree with TypeScript's; returns whether the native parser answered. */
async function agree(text: string | Uint8Array, dataBytes: number): Promise<boolean> {
  const header = typeof text === 'string' ? new Uint8Array(Buffer.from(text, 'utf8')) : text;
  const fileSize = 8 + header.length + dataBytes;
  const ts = typescript(header, fileSize);
  const nat = await nativeOutcome(header, fileSize);
  if (nat) expect(nat, typeof text === 'string' ? text.slice(0, 200) : 'bytes').toEqual(ts);
  return nat !== null;
}

describe('native safetensors header parser', () => {
  it('answers for ordinary headers, as the TypeScript parser does', async () => {
    const hf = readFileSync(join(__dirname, 'fixtures', 'safetensors_hf.safetensors'));
    const n = Number(hf.readBigUInt64LE(0));
    expect(await agree(hf.subarray(8, 8 + n), hf.length - 8 - n)).toBe(true);
    expect(await agree('{}', 0)).toBe(true);
    expect(await agree('{"__metadata__":null}  ', 0)).toBe(true);
    expect(
      await agree(
        '{ "b" : {"dtype":"F32","shape":[2],"data_offsets":[8,16]},\n"a":{"shape":[],"data_offsets":[0,8],"dtype":"F64"}}',
        16,
      ),
    ).toBe(true);
    expect(
      await agree(
        '{"\\u00e9t\\u00e9\\n\\"x\\"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"\u00e9":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}',
        1,
      ),
    ).toBe(true);
    expect(await agree('{"__metadata__":{"k":"v","\\u2603":"\\ud83d\\ude00"}}', 0)).toBe(false); // an escaped surrogate pair
  });

  it('leaves unusual but legal headers, and every malformed one, to the TypeScript parser', async () => {
    const tensor = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const declined = [
      `{"7":${tensor}}`, // an array-index name, which JavaScript lists first
      `{"__proto__":${tensor}}`,
      `{"__metadata__":{"__proto__":"x"}}`,
      '{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}',
      '{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}',
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}',
      '\ufeff{}', // a byte-order mark
      `{"a":${tensor},"a":${tensor}}`,
      '{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
      '{"a":{"dtype":"F24","shape":[1],"data_offsets":[0,4]}}',
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      '{"__metadata__":{"n":1}}',
      '[]',
      ' {}',
      '{}x',
      '{"a":"\u0001"}',
    ];
    for (const text of declined) expect(await agree(text, 4), text).toBe(false);
  });

  it('agrees on 4000 mutations of a checkpoint header', async () => {
    const params = [5, 1, 40, 3].map((n, i) => new Parameter(Tensor.zeros([n]), { name: `layer.${i}` }));
    const opt = new AdamW(params);
    params.forEach((p) => (p.grad = Tensor.zeros(p.data.shape)));
    opt.step();
    const file = join(dir, 'h.safetensors');
    await saveCheckpoint(file, { params, optimizer: opt, extra: { note: 'caf\u00e9 \u2603', list: [1, 2] } });
    const bytes = readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const good = bytes.subarray(8, 8 + n);
    const dataBytes = bytes.length - 8 - n;
    const next = rng(11);
    const pick = (k: number) => Math.floor(next() * k);
    const alphabet = '{}[]",:0123456789.-eE \\u\u00e9\ud83d';
    let answered = 0;
    for (let i = 0; i < 4000; i++) {
      const h = Buffer.from(good);
      let mutated: Uint8Array = h;
      const kind = pick(5);
      if (kind === 0) h[pick(h.length)] ^= 1 << pick(8);
      else if (kind === 1) h[pick(h.length)] = pick(256);
      else if (kind === 2) {
        const at = pick(h.length);
        mutated = Buffer.concat([h.subarray(0, at), h.subarray(at + 1 + pick(4))]);
      } else if (kind === 3) {
        const at = pick(h.length);
        mutated = Buffer.concat([h.subarray(0, at), Buffer.from(alphabet[pick(alphabet.length)]), h.subarray(at)]);
      } else {
        // A digit of an offset or shape changed: a header that still parses.
        const text = h.toString('utf8').replace(/\d+/g, (d) => (next() < 0.01 ? String(Number(d) + pick(3) - 1) : d));
        mutated = Buffer.from(text, 'utf8');
      }
      if (await agree(mutated, dataBytes)) answered++;
    }
    expect(answered).toBeGreaterThan(100); // the valid ones among them
  });
});
