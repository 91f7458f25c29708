// Moving values between tfjs tensors and fused-optim Tensors with as few copies as each tfjs
// backend allows, without breaking tfjs's rule that a tensor's values never change.
//
// Reading (grads in, and a variable someone else assigned): the values the backend already
// holds, without a copy where it keeps them in JavaScript memory. The CPU backend's
// dataSync() returns its own array; the wasm backend's would copy out of the wasm heap, so
// its typedArrayFromHeap() view is read instead. Other backends (tfjs-node) copy.
//
// Writing (updated values back into a variable): always into a new tensor that the variable
// is then assigned, as tfjs's own optimizers do, never into the variable's current memory.
// tfjs lets tensors share memory without telling (on the CPU backend, an array returned by
// dataSync() earlier, or the output of a contiguous tf.slice(), is the variable's own array),
// and the wasm backend's XNNPACK matmul caches the weights it packed under the tensor's id,
// so a weight changed in place would go on multiplying with its old values. The new tensor
// costs one copy from the fused tensor: on the wasm backend into a fresh tf.zeros() (written
// through its heap view before anyone else sees it), elsewhere into an uninitialized array
// (Buffer.allocUnsafeSlow: no zero fill) that tf.tensor() keeps as it is on the CPU backend
// (other backends, such as tfjs-node's, copy it once more into their own memory).
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '../tensor';

/** The parts of tfjs-backend-wasm's BackendWasm that are used here. */
interface WasmLikeBackend {
  typedArrayFromHeap(info: { dataId: tf.DataId; shape: number[]; dtype: tf.DataType }): Float32Array;
  refCount(dataId: tf.DataId): number;
}

/** How the values of the last transfers moved (for tests and the benchmark). */
export interface TransferCounts {
  /** Reads through a view of the wasm heap (no copy). */
  readsHeapView: number;
  /** Reads through dataSync() (no copy on the CPU backend, a copy on others). */
  readsDataSync: number;
  /** Writes into a new wasm tensor through its heap view. */
  writesHeapView: number;
  /** Writes into a new array that tf.tensor() takes (kept as is on the CPU backend). */
  writesArray: number;
}

export function newTransferCounts(): TransferCounts {
  return { readsHeapView: 0, readsDataSync: 0, writesHeapView: 0, writesArray: 0 };
}

// The backend holding a tensor's data: the engine's record (tfjs-core 4.x), else none.
function ownerOf(t: tf.Tensor): unknown {
  const state = (tf.engine() as unknown as { state?: { tensorInfo?: WeakMap<object, { backend?: unknown }> } }).state;
  return state?.tensorInfo?.get?.(t.dataId as object)?.backend;
}

function wasmLike(backend: unknown): WasmLikeBackend | null {
  const b = backend as Partial<WasmLikeBackend> | null | undefined;
  return b && typeof b.typedArrayFromHeap === 'function' && typeof b.refCount === 'function'
    ? (b as WasmLikeBackend)
    : null;
}

// A live view of a float32 tensor in a wasm-like backend, or null (then use the public path).
function heapView(t: tf.Tensor): { view: Float32Array } | null {
  const backend = wasmLike(ownerOf(t));
  if (!backend || backend.refCount(t.dataId) < 1) return null;
  const view = backend.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
  return view instanceof Float32Array && view.length === t.size ? { view } : null;
}

/**
 * The values of a float32 tensor, to be read at once (before any other tfjs call): the
 * backend's own memory where it can be read without a copy.
 */
export function readValues(t: tf.Tensor, counts: TransferCounts): Float32Array {
  const heap = heapView(t);
  if (heap) {
    counts.readsHeapView++;
    return heap.view;
  }
  const values = t.dataSync();
  if (!(values instanceof Float32Array) || values.length !== t.size)
    throw new TypeError(`the values of tensor #${t.id} did not come back as a Float32Array of ${t.size}`);
  counts.readsDataSync++;
  return values;
}

/** Gives the variable a new tensor holding the fused tensor's values (see the top of this file). */
export function writeValues(variable: tf.Variable, from: Tensor, counts: TransferCounts): void {
  tf.tidy(() => {
    // New tensors go to the current backend.
    if (wasmLike(tf.backend())) {
      const fresh = tf.zeros(variable.shape, 'float32');
      const heap = heapView(fresh);
      if (heap) {
        from.copyTo(heap.view);
        counts.writesHeapView++;
        variable.assign(fresh);
        return;
      }
    }
    const buffer = Buffer.allocUnsafeSlow(variable.size * 4);
    const values = new Float32Array(buffer.buffer, buffer.byteOffset, variable.size);
    from.copyTo(values);
    counts.writesArray++;
    variable.assign(tf.tensor(values, variable.shape, 'float32'));
  });
}
