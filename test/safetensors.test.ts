// The safetensors reader and writer (src/checkpoint/safetensors.ts) against the format's
// spec and Hugging Face's library: the committed fixture test/fixtures/safetensors_hf.safetensors
// was written by HF's safetensors 0.8.0 (test/fixtures/gen_safetensors_fixtures.py, which also
// loads files our writer wrote with HF's library). Plus every malformed-file rule, streaming,
// atomic replacement, and CRC-32.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_HEADER_BYTES, SafetensorsError, SafetensorsFile, readSafetensors, writeSafetensors } from '../src/index';
import { crc32 } from '../src/checkpoint/crc32';
import { native } from '../src/native';
import { bf16BitsToFloat32, f16BitsToFloat32, halfToFloat32Bits } from '../src/checkpoint/half';
import { findDuplicateKey } from '../src/checkpoint/safetensors';
import { bytesOf, joinFile, splitFile, tempDir } from './support/checkpoint_files';

const FIXTURE = join(__dirname, 'fixtures', 'safetensors_hf.safetensors');
const { dir, cleanup } = tempDir('fused-optim-st-');
afterAll(cleanup);
let counter = 0;
const tmp = (name = 'f') => join(dir, `${name}-${counter++}.safetensors`);

/** gen_safetensors_fixtures.py's float values: (i - n//2) * 0.25. */
const floats = (n: number) => Array.from({ length: n }, (_, i) => (i - Math.floor(n / 2)) * 0.25);

describe('reads the file Hugging Face safetensors wrote', () => {
  it('every dtype, shape and value, and the metadata', async () => {
    const { tensors, metadata } = await readSafetensors(FIXTURE);
    expect(metadata).toEqual({ source: 'huggingface safetensors 0.8.0, torch 1.13.0a0' });
    const t = tensors;
    expect(Object.keys(t)).toEqual([
      'i64',
      'f64',
      'empty',
      'f32',
      'f32_specials',
      'scalar',
      'i32',
      'bf16',
      'f16',
      'i16',
      'i8',
      'u8',
      'bool',
    ]);
    expect(t.f64).toMatchObject({ dtype: 'F64', shape: [2, 3] });
    expect(Array.from(t.f64.data as Float64Array)).toEqual(floats(6));
    expect(t.f32).toMatchObject({ dtype: 'F32', shape: [3, 4] });
    expect(Array.from(t.f32.data as Float32Array)).toEqual(floats(12));
    expect(
      Array.from(new Uint32Array((t.f32_specials.data as Float32Array).buffer, t.f32_specials.data.byteOffset, 7)),
    ).toEqual([0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 1, 0x7f7fffff]);
    expect(t.f16.dtype).toBe('F16');
    expect(Array.from(f16BitsToFloat32(t.f16.data as Uint16Array))).toEqual(floats(5));
    expect(t.bf16.dtype).toBe('BF16');
    expect(Array.from(bf16BitsToFloat32(t.bf16.data as Uint16Array))).toEqual(floats(7));
    expect(t.i64.data).toBeInstanceOf(BigInt64Array);
    expect(Array.from(t.i64.data as BigInt64Array)).toEqual([2n ** 40n, 2n ** 40n + 1n, 2n ** 40n + 2n, -(2n ** 62n)]);
    expect(Array.from(t.i32.data as Int32Array)).toEqual([0, 1, 2, 3, 4].map((i) => i * 100000 - 7));
    expect(Array.from(t.i16.data as Int16Array)).toEqual([-5000, -4000, -3000]);
    expect(t.i8.data).toBeInstanceOf(Int8Array);
    expect(Array.from(t.i8.data as Int8Array)).toEqual([-4, -3, -2, -1, 0, 1, 2, 3, 4]);
    expect(Array.from(t.u8.data as Uint8Array)).toEqual(Array.from({ length: 11 }, (_, i) => (i * 37) % 256));
    expect(t.bool).toMatchObject({ dtype: 'BOOL', shape: [5] });
    expect(Array.from(t.bool.data as Uint8Array)).toEqual([1, 0, 1, 0, 1]);
    expect(t.scalar).toMatchObject({ dtype: 'F32', shape: [] });
    expect(Array.from(t.scalar.data as Float32Array)).toEqual([1.5]);
    expect(t.empty).toMatchObject({ dtype: 'F32', shape: [0, 3] });
    expect(t.empty.data.length).toBe(0);
  });

  it('our writer, given the same tensors, writes the same bytes as Hugging Face', async () => {
    const { tensors, metadata } = await readSafetensors(FIXTURE);
    const out = tmp('same');
    await writeSafetensors(out, Object.entries(tensors), { metadata });
    expect(Buffer.compare(readFileSync(out), readFileSync(FIXTURE))).toBe(0);
  });

  it('SafetensorsFile: header first, tensors on demand, CRC by streaming', async () => {
    const f = await SafetensorsFile.open(FIXTURE);
    try {
      expect(f.names).toHaveLength(13);
      expect(f.dataStart % 8).toBe(0);
      expect(f.info('f32')).toEqual({ dtype: 'F32', shape: [3, 4], dataOffsets: [80, 128] });
      const bytes = await f.readBytes('f32');
      expect(await f.crc32('f32', 7)).toBe(crc32(bytes));
      await expect(f.read('nope')).rejects.toThrow(/has no tensor "nope"/);
    } finally {
      await f.close();
    }
  });
});

describe('writer', () => {
  it('round-trips every dtype it has a typed array for, with metadata', async () => {
    const file = tmp('rt');
    const input = {
      a: { data: new Float32Array([1, -2, 3.5, NaN]), shape: [2, 2] },
      b: { data: new Uint16Array([0x3c00, 0xc000]), dtype: 'F16' as const },
      c: { data: new Uint16Array([0x3f80]), dtype: 'BF16' as const },
      d: { data: new BigInt64Array([-1n, 2n ** 62n]) },
      e: { data: new Int32Array([-5]) },
      f: { data: new Uint8Array([1, 0, 1]), dtype: 'BOOL' as const },
      g: { data: new Float64Array([Math.PI]), shape: [] },
      h: { data: new Float32Array([1, 2, 3, 4]), dtype: 'C64' as const },
      i: { data: new Float32Array(0), shape: [0, 5] },
      j: { data: new BigUint64Array([2n ** 64n - 1n]) },
    };
    await writeSafetensors(file, input, { metadata: { hello: 'world', empty: '' } });
    const { tensors, metadata } = await readSafetensors(file);
    expect(metadata).toEqual({ hello: 'world', empty: '' });
    for (const [name, t] of Object.entries(input)) {
      expect(Array.from(bytesOf(tensors[name].data)), name).toEqual(Array.from(bytesOf(t.data)));
    }
    expect(tensors.a.shape).toEqual([2, 2]);
    expect(tensors.h).toMatchObject({ dtype: 'C64', shape: [2] });
    expect(tensors.g.shape).toEqual([]);
    // Widest elements first, so every tensor is aligned to its element size in the file.
    const f = await SafetensorsFile.open(file);
    for (const [, info] of f.tensors)
      expect(
        info.dataOffsets[0] %
          Math.min(
            8,
            Math.max(
              1,
              info.dtype === 'C64'
                ? 8
                : info.dtype.endsWith('64')
                  ? 8
                  : info.dtype.endsWith('32')
                    ? 4
                    : info.dtype.endsWith('16')
                      ? 2
                      : 1,
            ),
          ),
      ).toBe(0);
    expect(f.names.slice(0, 4).sort()).toEqual(['d', 'g', 'h', 'j']);
    await f.close();
    expect(f.dataStart % 8).toBe(0);
  });

  it('pads the header with spaces to a multiple of 8 and starts it with {', async () => {
    for (const name of ['x', 'xy', 'xyz', 'a-much-longer-name']) {
      const file = tmp('pad');
      await writeSafetensors(file, { [name]: { data: new Uint8Array([7]) } });
      const bytes = readFileSync(file);
      const { headerText } = splitFile(bytes);
      expect(headerText.length % 8).toBe(0);
      expect(headerText.startsWith('{')).toBe(true);
      expect(headerText.trimEnd()).toBe(JSON.stringify({ [name]: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }));
    }
  });

  it('calls producers one at a time, in file order, each after the previous tensor is written', async () => {
    const file = tmp('lazy');
    const log: string[] = [];
    const lazy = (name: string, n: number) => ({
      dtype: 'F32' as const,
      shape: [n],
      data: () => {
        log.push(`produce ${name}`);
        return new Float32Array(n).fill(n);
      },
    });
    await writeSafetensors(file, {
      small: lazy('small', 3),
      big: lazy('big', 300_000),
      half: { dtype: 'BF16', shape: [2], data: () => (log.push('produce half'), new Uint16Array(2)) },
    });
    expect(log).toEqual(['produce small', 'produce big', 'produce half']);
    const { tensors } = await readSafetensors(file);
    expect((tensors.big.data as Float32Array)[299_999]).toBe(300_000);
  });

  it('rejects bad input before creating a file', async () => {
    const file = tmp('bad');
    const cases: Array<[unknown, RegExp]> = [
      [{ a: { data: [1, 2, 3] } }, /must be a typed array/],
      [{ a: { data: new Float32Array(3), shape: [2] } }, /needs 8 bytes but the data has 12/],
      [{ a: { data: new Float32Array(3), dtype: 'F16' } }, /cannot hold F16/],
      [{ a: { data: new Float32Array(3), dtype: 'F99' } }, /unknown dtype/],
      [{ a: { data: () => new Float32Array(3) } }, /dtype and shape are required/],
      [{ a: { data: new Float32Array(1), shape: [-1] } }, /non-negative integers/],
      [{ __metadata__: { data: new Float32Array(1) } }, /cannot be a tensor name/],
    ];
    for (const [tensors, message] of cases) {
      await expect(writeSafetensors(file, tensors as never), String(message)).rejects.toThrow(message);
    }
    await expect(
      writeSafetensors(file, [
        ['a', { data: new Uint8Array(1) }],
        ['a', { data: new Uint8Array(1) }],
      ]),
    ).rejects.toThrow(/appears twice/);
    await expect(writeSafetensors(file, {}, { metadata: { n: 1 as unknown as string } })).rejects.toThrow(
      /must be a string/,
    );
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('replaces a file atomically: a failing producer leaves the old file and no temporary file', async () => {
    const file = tmp('atomic');
    await writeSafetensors(file, { a: { data: new Float32Array([1, 2]) } });
    const before = readFileSync(file);
    await expect(
      writeSafetensors(file, {
        a: { data: new Float32Array([3, 4]) },
        b: {
          dtype: 'F32',
          shape: [2],
          data: () => {
            throw new Error('producer failed');
          },
        },
      }),
    ).rejects.toThrow('producer failed');
    await expect(
      writeSafetensors(file, { b: { dtype: 'F32', shape: [2], data: () => new Float32Array(3) } }),
    ).rejects.toThrow(/was produced with 12 bytes/);
    expect(Buffer.compare(readFileSync(file), before)).toBe(0);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('an empty file (no tensors, no metadata) is valid', async () => {
    const file = tmp('none');
    await writeSafetensors(file, {});
    expect(readFileSync(file).length).toBe(16); // 8 + "{}" padded to 8
    expect(await readSafetensors(file)).toEqual({ tensors: {}, metadata: {} });
  });
});

describe('reader rejects malformed files, naming the file and the problem', () => {
  const good = () => readFileSync(FIXTURE);
  const expectReject = async (bytes: Uint8Array, message: RegExp) => {
    const file = tmp('bad');
    writeFileSync(file, bytes);
    const err = await readSafetensors(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, String(message)).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).file).toBe(file);
    expect((err as Error).message.startsWith(`${file}: `)).toBe(true);
    expect((err as Error).message).toMatch(message);
  };
  const withHeader = (edit: (h: Record<string, any>) => void, dataEdit?: (d: Uint8Array) => Uint8Array) => {
    const { headerText, data } = splitFile(good());
    const h = JSON.parse(headerText);
    edit(h);
    return joinFile(JSON.stringify(h), dataEdit ? dataEdit(data) : data);
  };

  it('a missing file', async () => {
    await expect(readSafetensors(join(dir, 'missing.safetensors'))).rejects.toThrow(/cannot open the file \(ENOENT\)/);
  });
  it('a folder', async () => {
    await expect(readSafetensors(dir)).rejects.toThrow(/not a regular file/);
  });
  it('empty and too short', async () => {
    await expectReject(new Uint8Array(0), /the file is empty/);
    await expectReject(new Uint8Array(5), /too short/);
  });
  it('a header length over 100 MB, or past the end of the file', async () => {
    const big = good();
    new DataView(big.buffer, big.byteOffset).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
    await expectReject(big, /over the 100000000-byte limit/);
    const huge = good();
    new DataView(huge.buffer, huge.byteOffset).setBigUint64(0, 2n ** 64n - 1n, true);
    await expectReject(huge, /over the 100000000-byte limit/);
    const past = good();
    new DataView(past.buffer, past.byteOffset).setBigUint64(0, BigInt(past.length), true);
    await expectReject(past, /runs? past|has only \d+ bytes after/);
  });
  it('truncated data, and extra bytes at the end', async () => {
    const g = good();
    await expectReject(g.subarray(0, g.length - 1), /ends at byte 235 but the data is only 234 bytes|cover/);
    await expectReject(g.subarray(0, 100), /has only|ends at byte/);
    await expectReject(Buffer.concat([g, Buffer.from([0])]), /cover 235 bytes of data but the file has 236/);
  });
  it('a foreign file (not safetensors at all)', async () => {
    await expectReject(
      Buffer.from('PK\u0003\u0004 this is a zip file, not safetensors at all'),
      /over the 100000000-byte limit|has only/,
    );
    await expectReject(
      Buffer.from('\u0002\u0000\u0000\u0000\u0000\u0000\u0000\u0000{}abc'),
      /cover 0 bytes of data but the file has 3/,
    );
    await expectReject(Buffer.from('{"just": "json"}'), /over the 100000000-byte limit/);
  });
  it('header not UTF-8, not JSON, not an object, not starting with {', async () => {
    const { data } = splitFile(good());
    await expectReject(
      joinFile('{"a":"\udcff"}', new Uint8Array(0)).map((b, i, a) => (i === a.length - 4 ? 0xff : b)),
      /not valid UTF-8|not valid JSON/,
    );
    await expectReject(joinFile('{"f64": {', data), /not valid JSON/);
    await expectReject(joinFile('[1, 2]', data), /does not start with '\{'/);
    await expectReject(joinFile(' {}', new Uint8Array(0)), /does not start with '\{'/);
    await expectReject(joinFile('{}x', new Uint8Array(0)), /not valid JSON/);
    await expectReject(joinFile('{}\u0000', new Uint8Array(0), { pad: false }), /not valid JSON/);
  });
  it('duplicate keys', async () => {
    const { headerText, data } = splitFile(good());
    const dup = headerText
      .trimEnd()
      .replace('{"__metadata__"', '{"scalar":{"dtype":"F32","shape":[],"data_offsets":[156,160]},"__metadata__"');
    await expectReject(joinFile(dup, data), /the key "scalar" twice/);
    expect(findDuplicateKey('{"a":{"b":1,"c":[{"b":2}]},"d":"\\"a\\""}')).toBeUndefined();
    expect(findDuplicateKey('{"a":{"b":1,"b":2}}')).toBe('b');
    expect(findDuplicateKey('{"\\u0061":1,"a":2}')).toBe('a');
  });
  it('metadata that is not an object of strings', async () => {
    await expectReject(
      withHeader((h) => (h.__metadata__ = { n: 1 })),
      /__metadata__\["n"\] must be a string/,
    );
    await expectReject(
      withHeader((h) => (h.__metadata__ = ['x'])),
      /__metadata__ must be an object/,
    );
  });
  it('unknown dtype, bad shape, bad offsets', async () => {
    await expectReject(
      withHeader((h) => (h.f32.dtype = 'F24')),
      /tensor "f32": unknown dtype "F24"/,
    );
    await expectReject(
      withHeader((h) => (h.f32.shape = [3, -4])),
      /shape must be an array of non-negative integers/,
    );
    await expectReject(
      withHeader((h) => (h.f32.shape = [3, 4.5])),
      /shape must be/,
    );
    await expectReject(
      withHeader((h) => (h.f32.shape = [4, 4])),
      /needs 64 bytes but data_offsets \[80, 128\] hold 48/,
    );
    await expectReject(
      withHeader((h) => (h.f32.data_offsets = [80])),
      /data_offsets must be two/,
    );
    await expectReject(
      withHeader((h) => (h.f32.data_offsets = [128, 80])),
      /end before they begin/,
    );
    await expectReject(
      withHeader((h) => (h.f32 = 'x')),
      /expected \{ dtype, shape, data_offsets \}/,
    );
  });
  it('offsets out of bounds, overlapping, or leaving a gap', async () => {
    await expectReject(
      withHeader((h) => (h.bool.data_offsets = [230, 236]), undefined),
      /needs 5 bytes/,
    );
    await expectReject(
      withHeader((h) => {
        h.bool.data_offsets = [9230, 9235];
      }),
      /starts at 9230, leaving a gap after byte 230/,
    );
    await expectReject(
      withHeader((h) => {
        h.u8.data_offsets = [218, 229];
      }),
      /overlaps the previous tensor/,
    );
    await expectReject(
      withHeader(
        (h) => {
          h.bool.data_offsets = [231, 236];
        },
        (d) => Buffer.concat([d, Buffer.from([0])]),
      ),
      /leaving a gap after byte 230/,
    );
    // Consistent with each other, but beyond the data.
    await expectReject(
      withHeader((h) => {
        h.bool.shape = [6];
        h.bool.data_offsets = [230, 236];
      }),
      /ends at byte 236 but the data is only 235 bytes/,
    );
  });
});

describe('crc32 (native: carry-less multiplication folding where the CPU has it)', () => {
  it('matches zlib for every length up to 300 at every alignment, and its method is reported', () => {
    const z = (zlib as unknown as { crc32(b: Uint8Array): number }).crc32;
    const data = new Uint8Array(400).map((_, i) => (i * 2246822519) >>> 24);
    for (let offset = 0; offset < 16; offset++)
      for (let n = 0; n <= 300; n++) {
        const piece = data.subarray(offset, offset + n);
        if (crc32(piece) !== z(piece)) throw new Error(`length ${n} at offset ${offset}`);
      }
    expect(['pclmul', 'table']).toContain(native().crc32Method());
  });

  it('matches the standard check value and zlib for any chunking', () => {
    expect(crc32(Buffer.from('123456789')).toString(16)).toBe('cbf43926');
    expect(crc32(new Uint8Array(0))).toBe(0);
    const data = new Uint8Array(100_003).map((_, i) => (i * 2654435761) >>> 24);
    const whole = crc32(data);
    expect(whole).toBe((zlib as unknown as { crc32(b: Uint8Array): number }).crc32(data));
    for (const step of [1, 7, 8, 9, 4096, 65537]) {
      let c = 0;
      for (let o = 0; o < data.length; o += step) c = crc32(data.subarray(o, o + step), c);
      expect(c, `chunks of ${step}`).toBe(whole);
    }
  });
});

describe('half conversions', () => {
  it('float16 bits to float32, every pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = f16BitsToFloat32(all);
    for (let h = 0; h < 65536; h += 1) {
      const exp = (h >> 10) & 31;
      const frac = h & 1023;
      const sign = h & 0x8000 ? -1 : 1;
      const want =
        exp === 31
          ? frac
            ? NaN
            : sign * Infinity
          : exp === 0
            ? sign * frac * 2 ** -24
            : sign * (1 + frac / 1024) * 2 ** (exp - 15);
      if (Number.isNaN(want)) expect(Number.isNaN(f[h])).toBe(true);
      else if (!Object.is(f[h], want)) throw new Error(`0x${h.toString(16)}: ${f[h]} != ${want}`);
    }
    expect(halfToFloat32Bits(0x7e01)).toBe(0x7fc02000); // NaN payload kept
  });
});
