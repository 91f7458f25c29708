// How Tensors travel through a backend that reads only host memory (MPI today): values
// are copied to a host array before the collective and back after it. Reductions run in
// fp32 whatever the tensor's dtype (a float16/bfloat16 tensor is widened, reduced, then
// rounded to nearest even once); gathers and broadcasts move the raw bits, so they are
// exact for every dtype. A CUDA tensor pays a device-to-host copy before and a
// host-to-device copy after (pageable memory; docs/distributed.md gives the cost).
import type { Tensor } from '../tensor';

/** A tensor's values as the array a reduction works on (a new fp32 copy). */
export function reduceValues(t: Tensor): Float32Array {
  return t.toFloat32Array();
}

/** A tensor's exact contents: fp32 values or raw 16-bit patterns (a new copy). */
export function rawValues(t: Tensor): Float32Array | Uint16Array {
  return t.dtype === 'float32' ? t.toFloat32Array() : t.toBits();
}

/** An empty host array of the kind rawValues() returns for `t`, over `buffer` when given. */
export function rawArrayFor(
  t: Tensor,
  numel: number,
  buffer?: ArrayBuffer,
  byteOffset = 0,
): Float32Array | Uint16Array {
  if (t.dtype === 'float32') return buffer ? new Float32Array(buffer, byteOffset, numel) : new Float32Array(numel);
  return buffer ? new Uint16Array(buffer, byteOffset, numel) : new Uint16Array(numel);
}

export function rawBytesPerElement(t: Tensor): number {
  return t.dtype === 'float32' ? 4 : 2;
}
