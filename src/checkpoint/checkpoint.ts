// saveCheckpoint / loadCheckpoint: one safetensors file with the param values, the
// optimizer's state and param groups, the scheduler's and scaler's state, and anything else
// the caller wants back (`extra`). docs/checkpoints.md describes the format, the guarantees
// and the memory and blocking behaviour.
//
// Saving (save.ts) streams every tensor from its native memory into a temporary file that is
// renamed over the target (atomic.ts), with a CRC-32 of every tensor and of the header, on
// worker threads. Loading (load.ts) checks the whole file and everything it is asked to
// restore before changing anything, then applies it, or changes nothing and throws a
// CheckpointError naming the file and the problem.
import {
  type BackgroundSave,
  type CheckpointIOOptions,
  type LoadCheckpointOptions,
  type SaveCheckpointOptions,
  type SaveOptions,
  checkLoadCall,
  checkSaveCall,
} from './calls';
import { load } from './load';
import { save } from './save';

export { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, MANIFEST_KEY, MANIFEST_CRC_KEY } from './manifest';
export { CheckpointError, type CheckpointErrorCode } from './errors';
export type {
  BackgroundSave,
  CheckpointIOOptions,
  CheckpointOptimizer,
  LoadCheckpointOptions,
  SaveCheckpointOptions,
  SaveOptions,
  Stateful,
} from './calls';

/**
 * Saves params, optimizer, scheduler, scaler and `extra` to one safetensors file, atomically:
 * a crash or kill at any moment leaves the previous file or the new one, never a broken one.
 * Until it resolves, the optimizer refuses to step (a fused optimizer, with a clear error) and
 * the params refuse to be written. With `{ background: true }` it resolves as soon as a copy
 * of everything is taken, with `{ written }`, and writes the copy while training goes on.
 */
export function saveCheckpoint(
  file: string,
  state: SaveCheckpointOptions,
  options?: SaveOptions & { background?: false },
): Promise<void>;
export function saveCheckpoint(
  file: string,
  state: SaveCheckpointOptions,
  options: SaveOptions & { background: true },
): Promise<BackgroundSave>;
export function saveCheckpoint(
  file: string,
  state: SaveCheckpointOptions,
  options?: SaveOptions,
): Promise<void | BackgroundSave>;
export async function saveCheckpoint(
  file: string,
  state: SaveCheckpointOptions,
  options?: SaveOptions,
): Promise<void | BackgroundSave> {
  return save(checkSaveCall(file, state, options));
}

/**
 * Restores params (in place, by name), optimizer, scheduler and scaler from a checkpoint and
 * returns its `extra`. The whole file and everything asked of it are checked first; if
 * anything is wrong nothing changes and a CheckpointError names the file and the problem.
 */
export async function loadCheckpoint(
  file: string,
  targets: LoadCheckpointOptions,
  options?: CheckpointIOOptions,
): Promise<unknown> {
  return load(checkLoadCall(file, targets, options));
}
