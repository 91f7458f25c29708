// Applying a checked checkpoint. The parts that may still refuse go first: a duck-typed
// scaler or scheduler (its previous dict is kept and put back if a later part refuses), then
// an optimizer that loads through its own loadStateDict(). Then the param values and the
// optimizer's existing state buffers are read from the file into place, and the fused
// optimizer and the scheduler commit (neither can refuse at this point).
import type { CheckpointLock } from '../fused_optimizer';
import type { Parameter } from '../parameter';
import type { LoadCall, Stateful } from './calls';
import type { DecodedParts } from './decode_parts';
import { CheckFailure, fail } from './errors';
import { type Destination, type FileTensors } from './file_tensors';
import type { ParamValue } from './load_checks';
import { CONVERT } from './native_io';
import type { OptimizerLoad } from './optimizer_load';
import type { Slicer } from './yielding';

export interface LoadToApply {
  call: LoadCall;
  file: FileTensors;
  paramValues: ParamValue[];
  parts: DecodedParts;
  optimizer?: OptimizerLoad;
  /** The optimizer's checkpoint lock, lifted for the checkpoint's own changes of its state. */
  lock: CheckpointLock;
  slicer: Slicer;
}

export async function applyLoad(a: LoadToApply): Promise<unknown> {
  const { call, parts, optimizer } = a;
  const undo = new Undo();
  if (call.scaler) undo.run('scaler', () => call.scaler!.loadStateDict(parts.scalerDict as never), call.scaler);
  if (call.scheduler && !parts.schedulerCommit)
    undo.run('scheduler', () => call.scheduler!.loadStateDict(parts.schedulerDict as never), call.scheduler);
  if (optimizer?.dict)
    undo.run('optimizer', () => a.lock.unlocked(() => call.optimizer!.loadStateDict(optimizer.dict as never)));

  const written = new Set<Parameter>();
  const targets = new Map<number, Destination>(optimizer?.inPlace ?? []);
  for (const { param, tensor } of a.paramValues) {
    if (a.slicer.due()) await a.slicer.yield();
    if (optimizer?.mastered.has(param)) continue; // loadStateDict() wrote it from the master
    param.data.checkAlive(`param '${param.name}' data`);
    targets.set(a.file.indexOf(tensor), { place: param.data.handle, convert: CONVERT.none });
    written.add(param);
  }
  try {
    await a.file.readInto(targets);
  } catch (e) {
    undo.rollback();
    if (e instanceof CheckFailure) throw e;
    fail(
      'PartlyApplied',
      `reading the params and state into place failed (${(e as Error).message}): the checkpoint is only partly applied`,
      e,
    );
  }
  a.lock.unlocked(() => optimizer?.commit((p) => written.has(p)));
  parts.schedulerCommit?.();
  return parts.extra;
}

/** Parts applied so far, with how to put each back. */
class Undo {
  readonly #steps: Array<() => void> = [];

  /** Applies one part; if it refuses, puts back the ones before and throws 'Rejected'. */
  run(what: string, apply: () => void, restorable?: Stateful): void {
    const before = restorable?.stateDict();
    const restore = () => restorable?.loadStateDict(before as never);
    try {
      apply();
    } catch (e) {
      this.#steps.push(restore); // it may have changed part of itself before refusing
      this.rollback();
      fail('Rejected', `the ${what} rejected its state (${(e as Error).message}); nothing was changed`, e);
    }
    this.#steps.push(restore);
  }

  rollback(): void {
    for (const u of this.#steps.reverse()) {
      try {
        u();
      } catch {
        // best effort: the original error is what matters
      }
    }
    this.#steps.length = 0;
  }
}
