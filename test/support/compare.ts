// Assertions that report the first differing element instead of dumping whole arrays.
export function bitsOf(a: Float32Array | Uint16Array | Uint8Array): Uint32Array {
  // A state dict's buffers are typed as any state dtype's; these tests compare fp32 ones.
  if (!(a instanceof Float32Array)) throw new TypeError(`bitsOf: expected a Float32Array, got a ${a.constructor.name}`);
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Throws unless a and b hold the same bit patterns. */
export function expectSameBits(
  actual: Uint32Array | Uint16Array,
  expected: Uint32Array | Uint16Array,
  what: string,
): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  let diffs = 0;
  let first = -1;
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      if (first < 0) first = i;
      diffs++;
    }
  }
  if (diffs) {
    throw new Error(
      `${what}: ${diffs} of ${actual.length} elements differ; first at ${first}: got 0x${actual[first].toString(16)}, expected 0x${expected[first].toString(16)}`,
    );
  }
}

/** Throws unless |actual - expected| <= atol + rtol * |expected| everywhere. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  { rtol = 1e-6, atol = 1e-7 } = {},
): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, atol ${atol})`,
    );
  }
}
