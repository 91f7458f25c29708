// How Tensors travel through a backend that reads only host memory (MPI today): values
// are copied to a host array before the collective and back after it. Reductions run in
// fp32 whatever the tensor's dtype (a float16/bfloat16 tensor is widened, reduced, then
// rounded to nearest even once); gathers and broadcasts move the raw bits, so they are
// exact for every dtype. A CUDA tensor pays a device-to-host copy before and a
// host-to-device copy after (pageable memory; docs/distributed.md gives the cost).
import type { Tensor } from '../tensor';

/** A tensor's values as a reduction works on them (fp32), copied into `out`. */
export function readReduceValues(t: Tensor, out: Float32Array): void {
  t.toFloat32Array(out);
}

/** A tensor's exact contents (fp32 values or raw 16-bit patterns), copied into `out`. */
export function readRawValues(t: Tensor, out: Float32Array | Uint16Array): void {
  if (t.dtype === 'float32') t.toFloat32Array(out as Float32Array);
  else t.toBits(out as Uint16Array);
}

/** A host array for `t`'s raw contents (Float32Array or Uint16Array), over `buffer` when given. */
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
