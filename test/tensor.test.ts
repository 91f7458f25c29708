// Tensor on the CPU: construction, shapes, fp32 <-> fp16/bf16 conversion (round to nearest
// even, checked against the independent numeric rounding in support/half_reference.ts),
// raw-bit transfers, dispose, argument errors, and memory release by the garbage collector.
import { describe, expect, it } from 'vitest';
import { type DType, Tensor } from '../src/index';
import { native } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { bf16BitsToNumber, halfBitsToNumber, toBf16Bits, toHalfBits } from './support/half_reference';
import { randn, rng } from './support/random';

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];
const HALF: Array<'float16' | 'bfloat16'> = ['float16', 'bfloat16'];

/** fp32 values from raw 32-bit patterns (NaN payloads survive: no JS number in between). */
function f32FromBits(bits: ArrayLike<number>): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
/** The fp32 neighbours of a positive finite fp32 value. */
function nextUp(x: number): number {
  scratch[0] = x;
  scratchBits[0] += 1;
  return scratch[0];
}
function nextDown(x: number): number {
  scratch[0] = x;
  scratchBits[0] -= 1;
  return scratch[0];
}

const half = {
  float16: {
    toBits: toHalfBits,
    decode: halfBitsToNumber,
    isNaNBits: (b: number) => (b & 0x7c00) === 0x7c00 && (b & 0x03ff) !== 0,
    maxFiniteBits: 0x7bff,
    /** The value one ulp above the largest finite value (where inf "would" be). */
    beyondMax: 65536,
  },
  bfloat16: {
    toBits: toBf16Bits,
    decode: bf16BitsToNumber,
    isNaNBits: (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x007f) !== 0,
    maxFiniteBits: 0x7f7f,
    beyondMax: 2 ** 128,
  },
} as const;

const hex = (n: number, width = 4) => `0x${n.toString(16).padStart(width, '0')}`;

/**
 * Converts `values` to `dtype` through Tensor.from and through copyFrom, and checks every
 * element against the reference rounding (NaN: any NaN pattern), and toFloat32Array()
 * against the reference decoding of the bits.
 */
function checkConversion(dtype: 'float16' | 'bfloat16', values: Float32Array, what: string): void {
  const h = half[dtype];
  const inBits = bitsOf(values);
  const viaFrom = Tensor.from(values, { dtype, device: 'cpu' });
  const viaCopy = Tensor.zeros([values.length], { dtype, device: 'cpu' });
  viaCopy.copyFrom(values);
  for (const [how, t] of [
    ['Tensor.from', viaFrom],
    ['copyFrom', viaCopy],
  ] as const) {
    const bits = t.toBits();
    const decoded = t.toFloat32Array();
    const bad: string[] = [];
    let badCount = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const got = bits[i];
      const ok = Number.isNaN(v) ? h.isNaNBits(got) : got === h.toBits(v);
      if (!ok) {
        badCount++;
        if (bad.length < 6) {
          const expected = Number.isNaN(v) ? 'a NaN' : hex(h.toBits(v));
          bad.push(`${v} (${hex(inBits[i], 8)}) -> ${hex(got)}, expected ${expected}`);
        }
      }
      const back = decoded[i];
      const want = h.decode(got);
      if (!(Object.is(back, want) || (Number.isNaN(back) && Number.isNaN(want)))) {
        badCount++;
        if (bad.length < 6) bad.push(`toFloat32Array of ${hex(got)} gave ${back}, expected ${want}`);
      }
    }
    expect(bad, `${what} (${dtype}, ${how}): ${badCount} of ${values.length} wrong`).toEqual([]);
    t.dispose();
  }
}

/** Both signs of every value in `positive`. */
function withNegatives(positive: number[]): Float32Array {
  return Float32Array.from([...positive, ...positive.map((x) => -x)]);
}

describe('Tensor construction', () => {
  for (const dtype of DTYPES) {
    describe(dtype, () => {
      it('zeros: shape, numel, dtype, device, all zero', () => {
        const t = Tensor.zeros([2, 3, 4], { dtype, device: 'cpu' });
        expect(t.dtype).toBe(dtype);
        expect(t.shape).toEqual([2, 3, 4]);
        expect(t.numel).toBe(24);
        expect(t.device).toBe('cpu');
        expect(t.disposed).toBe(false);
        expect(Array.from(t.toFloat32Array())).toEqual(new Array(24).fill(0));
        if (dtype !== 'float32') expect(Array.from(t.toBits())).toEqual(new Array(24).fill(0));
        t.dispose();
      });

      it('zeros: a number is a 1-d shape; [] is a scalar; a 0 dimension is empty', () => {
        const a = Tensor.zeros(5, { dtype, device: 'cpu' });
        expect(a.shape).toEqual([5]);
        expect(a.numel).toBe(5);
        const s = Tensor.zeros([], { dtype, device: 'cpu' });
        expect(s.shape).toEqual([]);
        expect(s.numel).toBe(1);
        expect(s.toFloat32Array().length).toBe(1);
        const e = Tensor.zeros([2, 0, 3], { dtype, device: 'cpu' });
        expect(e.numel).toBe(0);
        expect(e.toFloat32Array().length).toBe(0);
        e.zero();
        e.copyFrom(new Float32Array(0));
        for (const t of [a, s, e]) t.dispose();
      });

      it('from: default shape is [values.length]; an explicit shape is kept (copied, frozen)', () => {
        const values = Float32Array.from([1, -2, 0.5, 3, 0, -0.25]);
        const t = Tensor.from(values, { dtype, device: 'cpu' });
        expect(t.shape).toEqual([6]);
        expect(t.numel).toBe(6);
        expect(t.dtype).toBe(dtype);
        expect(Array.from(t.toFloat32Array())).toEqual(Array.from(values)); // all exact in every dtype
        const shape = [2, 3];
        const u = Tensor.from(values, { dtype, shape, device: 'cpu' });
        shape[0] = 99;
        expect(u.shape).toEqual([2, 3]);
        expect(Object.isFrozen(u.shape)).toBe(true);
        expect(u.numel).toBe(6);
        const scalar = Tensor.from([7], { dtype, shape: [], device: 'cpu' });
        expect(scalar.shape).toEqual([]);
        expect(Array.from(scalar.toFloat32Array())).toEqual([7]);
        for (const x of [t, u, scalar]) x.dispose();
      });

      it('from: plain arrays of numbers', () => {
        const t = Tensor.from([1, 2.5, -3, 0], { dtype, device: 'cpu' });
        expect(Array.from(t.toFloat32Array())).toEqual([1, 2.5, -3, 0]);
        t.dispose();
      });

      it('from: a shape that does not hold the values is a RangeError naming both counts', () => {
        const values = new Float32Array(6);
        expect(() => Tensor.from(values, { dtype, shape: [4], device: 'cpu' })).toThrow(RangeError);
        expect(() => Tensor.from(values, { dtype, shape: [4], device: 'cpu' })).toThrow(/\[4\].*4 elements.*6 values/);
        expect(() => Tensor.from(values, { dtype, shape: [2, 4], device: 'cpu' })).toThrow(/8 elements.*6 values/);
        expect(() => Tensor.from(values, { dtype, shape: [], device: 'cpu' })).toThrow(RangeError);
      });

      it('copyFrom overwrites every element; zero() clears in place', () => {
        const t = Tensor.zeros([2, 2], { dtype, device: 'cpu' });
        t.copyFrom(Float32Array.from([1, 2, 3, 4]));
        expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3, 4]);
        t.copyFrom(Float32Array.from([-1, 0.5, 8, -0]));
        expect(Array.from(t.toFloat32Array())).toEqual([-1, 0.5, 8, -0]);
        t.zero();
        const z = t.toFloat32Array();
        expect(Array.from(z)).toEqual([0, 0, 0, 0]);
        expect(Array.from(bitsOf(z))).toEqual([0, 0, 0, 0]); // +0, not -0
        t.dispose();
      });

      it('toFloat32Array returns a copy', () => {
        const t = Tensor.from([1, 2, 3], { dtype, device: 'cpu' });
        const a = t.toFloat32Array();
        a[0] = 100;
        expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3]);
        t.dispose();
      });
    });
  }

  it('the default dtype is float32', () => {
    const t = Tensor.from([1, 2], { device: 'cpu' });
    expect(t.dtype).toBe('float32');
    expect(Tensor.zeros([3], { device: 'cpu' }).dtype).toBe('float32');
  });

  it('float32 keeps every bit pattern exactly, NaN payloads included', () => {
    const next = rng(7);
    const patterns = [
      0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0x7fc12345,
      0x00000001, 0x807fffff, 0x7f7fffff, 0x3f800001,
    ];
    for (let i = 0; i < 4096; i++) patterns.push(Math.floor(next() * 2 ** 32));
    const values = f32FromBits(patterns);
    const t = Tensor.from(values, { device: 'cpu' });
    expectSameBits(bitsOf(t.toFloat32Array()), Uint32Array.from(patterns), 'float32 round trip');
    t.copyFrom(values);
    expectSameBits(bitsOf(t.toFloat32Array()), Uint32Array.from(patterns), 'float32 copyFrom round trip');
    t.dispose();
  });

  it('toBits of a float32 tensor is a TypeError', () => {
    const t = Tensor.zeros([2], { dtype: 'float32', device: 'cpu' });
    expect(() => t.toBits()).toThrow(TypeError);
    expect(() => t.toBits()).toThrow(/float32/);
    t.dispose();
  });
});

describe('float32 -> float16 / bfloat16 rounds to nearest even', () => {
  it('the ties the reference and the addon must agree on (explicit bits)', () => {
    // fp16: ulp(1) = 2^-10. bf16: ulp(1) = 2^-7.
    const f16 = Tensor.from(
      [
        1 + 2 ** -11,
        1 + 3 * 2 ** -11,
        1 + 2 ** -11 + 2 ** -20,
        -(1 + 2 ** -11),
        2 ** -25,
        3 * 2 ** -25,
        65520,
        65519.99609375,
      ],
      { dtype: 'float16', device: 'cpu' },
    );
    expect(Array.from(f16.toBits(), (b) => hex(b))).toEqual([
      '0x3c00',
      '0x3c02',
      '0x3c01',
      '0xbc00',
      '0x0000',
      '0x0002',
      '0x7c00',
      '0x7bff',
    ]);
    const bf = Tensor.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 65504, 65520], {
      dtype: 'bfloat16',
      device: 'cpu',
    });
    // 65504 and 65520 lie between 65280 and 65536 (ulp 256): both round up to 65536 = 0x4780.
    expect(Array.from(bf.toBits(), (b) => hex(b))).toEqual([
      '0x3f80',
      '0x3f82',
      '0x3f81',
      '0xbf80',
      '0x4780',
      '0x4780',
    ]);
    // The reference agrees (so the sweeps below test the addon against something right).
    expect([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 65519.99609375].map(toHalfBits)).toEqual([
      0x3c00, 0x3c02, 0x7c00, 0x7bff,
    ]);
    expect([1 + 2 ** -8, 1 + 3 * 2 ** -8].map(toBf16Bits)).toEqual([0x3f80, 0x3f82]);
    f16.dispose();
    bf.dispose();
  });

  for (const dtype of HALF) {
    describe(dtype, () => {
      it('random normals at many scales', () => {
        const next = rng(dtype === 'float16' ? 11 : 12);
        const scales = [1e-38, 1e-30, 1e-9, 1e-7, 6e-6, 1e-4, 1e-2, 1, 10, 1e3, 3e4, 6e4, 1e5, 1e10, 1e30, 1e38];
        const parts = scales.map((s) => randn(4096, next, s));
        const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          all.set(p, at);
          at += p.length;
        }
        checkConversion(dtype, all, 'random normals');
      });

      it('every midpoint between neighbouring values, and one fp32 ulp either side', () => {
        const h = half[dtype];
        const values: number[] = [];
        for (let b = 0; b <= h.maxFiniteBits; b++) {
          const lo = h.decode(b);
          const hi = b === h.maxFiniteBits ? h.beyondMax : h.decode(b + 1);
          const mid = (lo + hi) / 2;
          if (Math.fround(mid) !== mid) throw new Error(`midpoint ${mid} is not an fp32 value`);
          values.push(lo, mid, nextUp(mid));
          if (mid > 0) values.push(nextDown(mid));
        }
        checkConversion(dtype, withNegatives(values), 'midpoints');
      });

      it('overflow: the largest finite value, the rounding boundary, and beyond', () => {
        const values =
          dtype === 'float16'
            ? [
                65504, 65505, 65519, 65519.99609375, 65520, 65520.00390625, 65535, 65536, 70000, 1e6,
                3.4028234663852886e38,
              ]
            : [
                3.3895313892515355e38,
                f32FromBits([0x7f7f7fff])[0],
                f32FromBits([0x7f7f8000])[0],
                f32FromBits([0x7f7fffff])[0],
                65504,
                65520,
              ];
        const input = withNegatives(values);
        checkConversion(dtype, input, 'overflow');
        const t = Tensor.from(input, { dtype, device: 'cpu' });
        const got = t.toFloat32Array();
        const n = values.length;
        if (dtype === 'float16') {
          // 65519.996 and below stay finite; 65520 and above are inf.
          expect(Array.from(got.subarray(0, 4))).toEqual([65504, 65504, 65504, 65504]);
          expect(Array.from(got.subarray(4, n))).toEqual(new Array(n - 4).fill(Infinity));
          expect(Array.from(got.subarray(n + 4))).toEqual(new Array(n - 4).fill(-Infinity));
        } else {
          expect(Array.from(got.subarray(0, 2))).toEqual([3.3895313892515355e38, 3.3895313892515355e38]);
          expect(Array.from(got.subarray(2, 4))).toEqual([Infinity, Infinity]); // the tie goes to even: inf
        }
        t.dispose();
      });

      it('subnormals, the subnormal/normal boundary, and fp32 subnormal inputs', () => {
        const minNormal = dtype === 'float16' ? 2 ** -14 : 2 ** -126;
        const minSub = dtype === 'float16' ? 2 ** -24 : 2 ** -133;
        const values = [
          minSub,
          minSub / 2,
          nextUp(minSub / 2),
          nextDown(minSub / 2),
          1.5 * minSub,
          2.5 * minSub,
          3 * minSub,
          minNormal,
          minNormal - minSub,
          minNormal - minSub / 2,
          nextDown(minNormal - minSub / 2),
          nextUp(minNormal - minSub / 2),
          nextDown(minNormal),
          nextUp(minNormal),
          1e-45,
          1e-40,
          1.1754942e-38,
          5e-39, // fp32 subnormals
        ];
        for (let k = 1; k < 1024; k += 37) values.push(k * minSub, (k + 0.5) * minSub);
        checkConversion(dtype, withNegatives(values.filter((v) => v > 0 && Math.fround(v) === v)), 'subnormals');
        if (dtype === 'float16') {
          const t = Tensor.from(
            [2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 2 ** -14 - 2 ** -24, 2 ** -14 - 2 ** -25, 1e-40],
            { dtype, device: 'cpu' },
          );
          expect(Array.from(t.toBits(), (b) => hex(b))).toEqual([
            '0x0001',
            '0x0000',
            '0x0002',
            '0x0400',
            '0x03ff',
            '0x0400',
            '0x0000',
          ]);
          t.dispose();
        }
      });

      it('±0 and ±inf keep their sign; NaN stays NaN', () => {
        const values = f32FromBits([
          0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff,
          0x7f802000, 0x7fc00001, 0x7fffffff,
        ]);
        checkConversion(dtype, values, 'specials');
        const t = Tensor.from(values, { dtype, device: 'cpu' });
        const bits = t.toBits();
        const zeroSign = dtype === 'float16' ? [0x0000, 0x8000, 0x7c00, 0xfc00] : [0x0000, 0x8000, 0x7f80, 0xff80];
        expect(Array.from(bits.subarray(0, 4))).toEqual(zeroSign);
        const back = t.toFloat32Array();
        expect(Object.is(back[0], 0)).toBe(true);
        expect(Object.is(back[1], -0)).toBe(true);
        expect([back[2], back[3]]).toEqual([Infinity, -Infinity]);
        for (let i = 4; i < values.length; i++) expect(Number.isNaN(back[i]), `NaN input ${i}`).toBe(true);
        t.dispose();
      });
    });
  }
});

describe('raw 16-bit patterns', () => {
  for (const dtype of HALF) {
    it(`${dtype}: all 65536 patterns go in and out unchanged, and decode as the reference says`, () => {
      const h = half[dtype];
      const all = new Uint16Array(65536).map((_, i) => i);
      const t = Tensor.from(all, { dtype, device: 'cpu' });
      expect(t.shape).toEqual([65536]);
      expectSameBits(t.toBits(), all, `${dtype} bits round trip`);
      const decoded = t.toFloat32Array();
      const bad: string[] = [];
      for (let b = 0; b < 65536; b++) {
        const want = h.decode(b);
        const ok = Number.isNaN(want) ? Number.isNaN(decoded[b]) : Object.is(decoded[b], want);
        if (!ok && bad.length < 5) bad.push(`${hex(b)} -> ${decoded[b]}, expected ${want}`);
      }
      expect(bad).toEqual([]);
      // Re-encoding the decoded values gives the same bits (NaNs: still NaN).
      const again = Tensor.zeros([65536], { dtype, device: 'cpu' });
      again.copyFrom(decoded);
      const re = again.toBits();
      for (let b = 0; b < 65536; b++) {
        const ok = h.isNaNBits(b) ? h.isNaNBits(re[b]) : re[b] === b;
        if (!ok && bad.length < 5) bad.push(`re-encode ${hex(b)} -> ${hex(re[b])}`);
      }
      expect(bad).toEqual([]);
      // copyFrom(Uint16Array) overwrites raw bits too.
      const reversed = all.slice().reverse();
      t.copyFrom(reversed);
      expectSameBits(t.toBits(), reversed, `${dtype} copyFrom bits`);
      t.dispose();
      again.dispose();
    });

    it(`${dtype}: toBits returns a copy`, () => {
      const t = Tensor.from(Uint16Array.from([1, 2, 3]), { dtype, device: 'cpu' });
      const b = t.toBits();
      b[0] = 77;
      expect(Array.from(t.toBits())).toEqual([1, 2, 3]);
      t.dispose();
    });
  }

  it('a Uint16Array into a float32 tensor is a TypeError (from and copyFrom)', () => {
    expect(() => Tensor.from(new Uint16Array(4), { dtype: 'float32', device: 'cpu' })).toThrow(TypeError);
    expect(() => Tensor.from(new Uint16Array(4), { dtype: 'float32', device: 'cpu' })).toThrow(/float32/);
  });
});

describe('copyTo: values into a caller-owned Float32Array', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: writes what toFloat32Array returns, only inside out's range of a larger buffer`, () => {
      const values = randn(1001, rng(11));
      const t = Tensor.from(values, { dtype, device: 'cpu' });
      const buffer = new Float32Array(1001 + 6).fill(-7);
      const out = buffer.subarray(3, 3 + 1001);
      t.copyTo(out);
      expectSameBits(bitsOf(out), bitsOf(t.toFloat32Array()), `${dtype} copyTo`);
      expect([...buffer.subarray(0, 3), ...buffer.subarray(1004)]).toEqual([-7, -7, -7, -7, -7, -7]);
      t.dispose();
    });
  }

  it('a wrong type or length is an error naming out, and writes nothing', () => {
    const t = Tensor.from([1, 2, 3], { device: 'cpu' });
    const short = new Float32Array(2).fill(9);
    expect(() => t.copyTo(short)).toThrow(RangeError);
    expect(() => t.copyTo(short)).toThrow(/out has 2 elements but the tensor has 3/);
    expect(Array.from(short)).toEqual([9, 9]);
    expect(() => t.copyTo(new Float64Array(3) as unknown as Float32Array)).toThrow(/out must be a Float32Array/);
    // The addon checks again, whatever the TypeScript layer lets through.
    expect(() => t.handle.toFloat32(new Float32Array(4))).toThrow(/out has 4 elements/);
    expect(() => t.handle.toFloat32(new Uint16Array(3) as unknown as Float32Array)).toThrow(/Float32Array/);
    t.dispose();
    expect(() => t.copyTo(new Float32Array(3))).toThrow(/disposed/);
  });
});

describe('dispose', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: every method of a disposed tensor throws an Error saying disposed`, () => {
      const t = Tensor.from([1, 2, 3, 4], { dtype, device: 'cpu' });
      expect(t.disposed).toBe(false);
      t.dispose();
      expect(t.disposed).toBe(true);
      const calls: Array<[string, () => unknown]> = [
        ['toFloat32Array', () => t.toFloat32Array()],
        ['toBits', () => t.toBits()],
        ['copyFrom(Float32Array)', () => t.copyFrom(new Float32Array(4))],
        ['copyFrom(Uint16Array)', () => t.copyFrom(new Uint16Array(4))],
        ['zero', () => t.zero()],
        ['devicePointer', () => t.devicePointer],
      ];
      for (const [name, call] of calls) {
        let error: unknown;
        try {
          call();
        } catch (e) {
          error = e;
        }
        expect(error, name).toBeInstanceOf(Error);
        expect((error as Error).message, name).toMatch(/disposed/);
      }
      // Metadata stays readable; dispose is idempotent; toString says so.
      expect(t.shape).toEqual([4]);
      expect(t.dtype).toBe(dtype);
      expect(() => t.dispose()).not.toThrow();
      expect(t.disposed).toBe(true);
      expect(t.toString()).toMatch(/disposed/);
    });
  }
});

describe('bad arguments', () => {
  it('unknown dtype: TypeError naming dtype and the value', () => {
    for (const make of [
      () => Tensor.zeros([2], { dtype: 'float64' as DType, device: 'cpu' }),
      () => Tensor.from([1, 2], { dtype: 'int8' as DType, device: 'cpu' }),
    ]) {
      expect(make).toThrow(TypeError);
      expect(make).toThrow(/dtype.*(float64|int8)/);
    }
  });

  it('unknown device: TypeError naming device and the value', () => {
    for (const make of [
      () => Tensor.zeros([2], { device: 'tpu' as 'cpu' }),
      () => Tensor.from([1, 2], { device: 'gpu' as 'cpu' }),
    ]) {
      expect(make).toThrow(TypeError);
      expect(make).toThrow(/device.*(tpu|gpu)/);
    }
  });

  it('negative, fractional or non-numeric dimensions: RangeError (TypeError for a string) naming the dimension', () => {
    const cases: Array<[unknown, RegExp]> = [
      [[-1], /shape\[0\] must be >= 0, got -1/],
      [[2, -3], /shape\[1\] must be >= 0, got -3/],
      [[2.5], /shape\[0\] must be an integer, got 2.5/],
      [[1, 0.5], /shape\[1\] must be an integer, got 0.5/],
      [[NaN], /shape\[0\] must be an integer, got NaN/],
      [[Infinity], /shape\[0\] must be an integer, got Infinity/],
      [-1, /shape\[0\] must be >= 0, got -1/],
      [1.5, /shape\[0\] must be an integer, got 1.5/],
    ];
    for (const [shape, message] of cases) {
      const make = () => Tensor.zeros(shape as number[], { device: 'cpu' });
      expect(make, JSON.stringify(shape)).toThrow(RangeError);
      expect(make, JSON.stringify(shape)).toThrow(message);
    }
    // A string is the wrong type, and the message shows it is one (not "got [3]").
    expect(() => Tensor.zeros(['3'] as never, { device: 'cpu' })).toThrow(TypeError);
    expect(() => Tensor.zeros(['3'] as never, { device: 'cpu' })).toThrow(/shape\[0\] must be an integer, got "3"/);
    expect(() => Tensor.from([1, 2], { shape: [-2], device: 'cpu' })).toThrow(RangeError);
    expect(() => Tensor.from([1, 2], { shape: [-2], device: 'cpu' })).toThrow(/shape.*-2/);
    expect(() => Tensor.from([1, 2], { shape: [0.5, 4], device: 'cpu' })).toThrow(/shape.*0\.5/);
  });

  it('a shape that is not an array: TypeError', () => {
    expect(() => Tensor.zeros('abc' as unknown as number[], { device: 'cpu' })).toThrow(TypeError);
    expect(() => Tensor.from([1], { shape: { length: 1 } as unknown as number[], device: 'cpu' })).toThrow(TypeError);
  });

  it('values that are not an array: TypeError', () => {
    expect(() => Tensor.from(null as unknown as number[], { device: 'cpu' })).toThrow(TypeError);
    expect(() => Tensor.from(42 as unknown as number[], { device: 'cpu' })).toThrow(/values/);
  });

  it('an element count past any memory: RangeError saying it is out of range, before allocating', () => {
    const huge = () => Tensor.zeros([2 ** 24, 2 ** 24], { device: 'cpu' }); // 2^48 elements
    expect(huge).toThrow(RangeError);
    expect(huge).toThrow(/out of range|too large/);
    // Past 2^53 the count is still a valid non-negative integer: the message must say "too many", not "not an integer".
    const huger = () => Tensor.zeros([2 ** 30, 2 ** 30], { device: 'cpu' }); // 2^60 elements
    expect(huger).toThrow(RangeError);
    expect(huger).toThrow(/out of range|too large/);
  });

  for (const dtype of DTYPES) {
    it(`${dtype}: copyFrom with a wrong length or array type throws and leaves the tensor unchanged`, () => {
      const values = Float32Array.from([1.5, -2, 3.25, 4]);
      const t = Tensor.from(values, { dtype, shape: [2, 2], device: 'cpu' });
      const before = dtype === 'float32' ? bitsOf(t.toFloat32Array()) : t.toBits();
      const bad: Array<[unknown, typeof RangeError | typeof TypeError, RegExp]> = [
        [new Float32Array(3), RangeError, /3 values.*4 elements/],
        [new Float32Array(5), RangeError, /5 values.*4 elements/],
        [new Float32Array(0), RangeError, /0 values/],
        [new Float64Array(4), TypeError, /Float32Array/],
        [new Int16Array(4), TypeError, /Float32Array/],
        [[1, 2, 3, 4], TypeError, /Float32Array/],
        [null, TypeError, /Float32Array/],
      ];
      if (dtype === 'float32') bad.push([new Uint16Array(4), TypeError, /float32/]);
      else
        bad.push(
          [new Uint16Array(3), RangeError, /3 values.*4 elements/],
          [new Uint16Array(6), RangeError, /6 values/],
        );
      for (const [arg, cls, msg] of bad) {
        const call = () => t.copyFrom(arg as Float32Array);
        expect(call, String(arg)).toThrow(cls);
        expect(call, String(arg)).toThrow(msg);
      }
      const after = dtype === 'float32' ? bitsOf(t.toFloat32Array()) : t.toBits();
      expectSameBits(after, before, `${dtype} after rejected copyFrom`);
      t.dispose();
    });
  }

  it('devicePointer of a cpu tensor: TypeError saying it is not on cuda', () => {
    const t = Tensor.zeros([2], { device: 'cpu' });
    expect(() => t.devicePointer).toThrow(TypeError);
    expect(() => t.devicePointer).toThrow(/cuda/);
    t.dispose();
  });
});

describe('without a usable GPU', () => {
  const noGpu = !native().nativeInfo().cudaUsable;

  it.skipIf(!noGpu)("device 'cuda' is a clear error naming CUDA", () => {
    for (const make of [() => Tensor.zeros([2], { device: 'cuda' }), () => Tensor.from([1, 2], { device: 'cuda' })]) {
      expect(make).toThrow(Error);
      expect(make).toThrow(/cuda/i);
      expect(make).toThrow(/not usable/);
    }
  });

  it.skipIf(!noGpu)('Tensor.fromDevicePointer throws an Error mentioning CUDA', () => {
    for (const dtype of DTYPES) {
      const call = () => Tensor.fromDevicePointer(0x7f0000000000n, { dtype, shape: [4] });
      expect(call).toThrow(Error);
      expect(call).toThrow(/CUDA/);
    }
  });

  it('Tensor.fromDevicePointer checks its arguments', () => {
    expect(() => Tensor.fromDevicePointer(1234 as unknown as bigint, { shape: [4] })).toThrow(TypeError);
    expect(() => Tensor.fromDevicePointer(1234 as unknown as bigint, { shape: [4] })).toThrow(/bigint/);
    expect(() => Tensor.fromDevicePointer(0x10000n, { shape: [-4] })).toThrow(RangeError);
    expect(() => Tensor.fromDevicePointer(0x10000n, { dtype: 'int8' as DType, shape: [4] })).toThrow(TypeError);
  });
});

describe('garbage collection', () => {
  const MB = 2 ** 20;
  const TENSOR_ELEMENTS = 4 * MB; // 16 MB of float32

  async function settle(): Promise<void> {
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  }

  // Runs first, so freed-but-retained heap from the other test cannot hide a leak.
  it('dispose() frees at once, even in a loop that never yields (48 x 16 MB)', async () => {
    // Node-API (version 8, Node 20) runs finalizers of collected tensors only when the event
    // loop turns, so a synchronous loop must dispose() what it drops (docs/api.md, Tensor, says so).
    await settle();
    const base = process.memoryUsage().rss;
    let peak = base;
    for (let i = 0; i < 48; i++) {
      const t = Tensor.zeros([TENSOR_ELEMENTS], { device: 'cpu' });
      t.zero();
      peak = Math.max(peak, process.memoryUsage().rss);
      t.dispose();
    }
    // 768 MB would be live if dispose() did not free; one or two tensors are.
    expect((peak - base) / MB).toBeLessThan(100);
  });

  it('tensors dropped without dispose() are freed (200 x 16 MB, yielding to the event loop)', async () => {
    await settle();
    const base = process.memoryUsage().rss;
    let peak = base;
    for (let i = 0; i < 200; i++) {
      Tensor.zeros([TENSOR_ELEMENTS], { device: 'cpu' }); // zero-filled: the pages are really touched
      await new Promise((r) => setImmediate(r));
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    // 3.2 GB were allocated in all; the GC, told about the external memory, keeps the live set small.
    expect((peak - base) / MB).toBeLessThan(800);
  });
});
