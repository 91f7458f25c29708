// Long loops of the JavaScript thread (a checkpoint of 100k params has 300k tensors to
// check and place) give the event loop a turn every few milliseconds, so timers and I/O
// callbacks keep running during a save or load.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Work budget per turn of the event loop. */
const SLICE_MS = 4;

export class Slicer {
  #since = performance.now();
  #count = 0;

  /**
   * Call once per item; true when the slice is spent (checked every 16 items), then
   * `await slicer.yield()`. Synchronous, so the common case costs no promise.
   */
  due(): boolean {
    if (++this.#count & 15) return false;
    return performance.now() - this.#since >= SLICE_MS;
  }

  /** Yields now (between phases). */
  async yield(): Promise<void> {
    await nextTurn();
    this.#since = performance.now();
  }
}
