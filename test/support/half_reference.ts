// Float -> fp16/bf16 rounding written numerically (not on bits, unlike native/common), so
// the tests check the native conversions against an independent implementation.
function roundHalfEven(y: number): number {
  const f = Math.floor(y);
  const d = y - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// mantBits: stored mantissa bits; bias: exponent bias; expBits: exponent field width.
function roundToBits(x: number, mantBits: number, expBits: number): number {
  const bias = (1 << (expBits - 1)) - 1;
  const maxExpField = (1 << expBits) - 1;
  const sign = x < 0 || Object.is(x, -0) ? 1 << (mantBits + expBits) : 0;
  if (Number.isNaN(x)) return (maxExpField << mantBits) | (1 << (mantBits - 1));
  const a = Math.abs(x);
  if (a === Infinity) return sign | (maxExpField << mantBits);
  const minNormalExp = 1 - bias;
  let e = Math.floor(Math.log2(a));
  if (a > 0 && 2 ** e > a) e -= 1; // guard log2 rounding
  if (a > 0 && 2 ** (e + 1) <= a) e += 1;
  if (a === 0 || e < minNormalExp) {
    const m = roundHalfEven(a / 2 ** (minNormalExp - mantBits));
    return sign | m; // m may reach 1 << mantBits: that is the smallest normal's bits
  }
  let m = roundHalfEven(a / 2 ** (e - mantBits));
  if (m === 2 ** (mantBits + 1)) {
    m /= 2;
    e += 1;
  }
  const field = e + bias;
  if (field >= maxExpField) return sign | (maxExpField << mantBits);
  return sign | (field << mantBits) | (m - 2 ** mantBits);
}

export const toHalfBits = (x: number): number => roundToBits(Math.fround(x), 10, 5);
export const toBf16Bits = (x: number): number => roundToBits(Math.fround(x), 7, 8);

export function halfBitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

export function bf16BitsToNumber(h: number): number {
  const f = new Float32Array(new Uint32Array([h << 16]).buffer);
  return f[0];
}

export function roundTo(dtype: 'float32' | 'float16' | 'bfloat16', x: number): number {
  if (dtype === 'float32') return Math.fround(x);
  return dtype === 'float16' ? halfBitsToNumber(toHalfBits(x)) : bf16BitsToNumber(toBf16Bits(x));
}
