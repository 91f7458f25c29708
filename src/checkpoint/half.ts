// float16 / bfloat16 bit patterns to float32 (exact, NaN payloads kept), for converting
// state tensors saved in a half type (e.g. imported from a PyTorch run in bf16) to the fp32
// the optimizers keep.
export function bf16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) view[i] = bits[i] << 16;
  return out;
}

/** The float32 bit pattern of a float16 bit pattern. */
export function halfToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  let exp = (h >> 10) & 0x1f;
  let frac = h & 0x3ff;
  if (exp === 31) return (sign | 0x7f800000 | (frac << 13)) >>> 0;
  if (exp === 0) {
    if (frac === 0) return sign >>> 0;
    exp = 1;
    while (!(frac & 0x400)) {
      frac <<= 1;
      exp--;
    }
    frac &= 0x3ff;
  }
  return (sign | ((exp + 112) << 23) | (frac << 13)) >>> 0;
}

export function f16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) view[i] = halfToFloat32Bits(bits[i]);
  return out;
}
