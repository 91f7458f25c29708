// One checkpoint operation at a time per thread: a save (including the background write of a
// background save) or a load starts when the one before it has finished, so two saves never
// race for the disk or a file, and a load sees the file a background save is writing once it
// is complete. A failed background save is reported by its `written` promise and, if nothing
// awaited or handled that promise, by the next save, which throws its error (so a failure is
// never silent, and never an unhandled rejection that ends the process).
import { CheckpointError } from './errors';

let tail: Promise<void> = Promise.resolve();
let unreported: { error: CheckpointError; written: WrittenPromise } | undefined;

/** Waits for the operations before; resolves with the function that lets the next one start. */
export async function takeTurn(): Promise<() => void> {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  const before = tail;
  tail = before.then(() => done);
  await before;
  return release;
}

/**
 * The `written` promise of a background save. It notes whether anything has attached a
 * handler (then(), catch(), finally() and await all call then() on a promise of another
 * class), so that the next save knows whether a failure was already seen.
 */
export class WrittenPromise extends Promise<void> {
  #observed = false;
  static override get [Symbol.species]() {
    return Promise;
  }
  override then<A = void, B = never>(
    onFulfilled?: ((value: void) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    this.#observed = true;
    return super.then(onFulfilled, onRejected);
  }
  get observed(): boolean {
    return this.#observed;
  }
}

/**
 * The `written` promise of a background write, which holds the turn until it settles: a
 * failure is recorded for the next save before the turn passes on.
 */
export function backgroundWritten(write: Promise<void>, release: () => void): WrittenPromise {
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const written = new WrittenPromise((resolve, reject) => (settle = { resolve, reject }));
  // Handled here, without marking it observed: an unawaited failure must not end the process.
  Promise.prototype.then.call(written, undefined, () => {});
  write.then(
    () => {
      release();
      settle.resolve();
    },
    (e: CheckpointError) => {
      unreported = { error: e, written };
      release();
      settle.reject(e);
    },
  );
  return written;
}

/** Throws the failure of an earlier background save that nothing observed (once). */
export function throwUnreportedFailure(op: string, file: string): void {
  const u = unreported;
  unreported = undefined;
  if (!u || u.written.observed) return;
  throw new CheckpointError(
    op,
    file,
    `an earlier background save failed and its written promise was not awaited: ${u.error.message}`,
    'BackgroundSaveFailed',
    { cause: u.error },
  );
}
