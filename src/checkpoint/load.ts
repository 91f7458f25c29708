// loadCheckpoint, in phases:
//   1. read the header and manifest and check them (manifest.ts, layout.ts), and check the
//      manifest against the targets (load_checks.ts);
//   2. read the few tensors that become JavaScript values (extra, scheduler and scaler
//      tensors), decode the dicts, and let the optimizer check its state dict (a fused
//      optimizer with its state buffers as stand-ins: optimizer_load.ts);
//   3. checksum every tensor of the file (file_tensors.ts); state buffers created for the load
//      are filled on the way, since they are not the optimizer's yet;
//   4. apply (apply.ts): the parts that may refuse first, then the param values and the
//      optimizer's existing buffers straight from the file, then the commits.
// Until step 4 nothing has changed; any failure is a CheckpointError naming the file.
import type { CheckpointLock } from '../fused_optimizer';
import type { FileHandle } from './atomic';
import type { LoadCall } from './calls';
import { fusedOptimizer, ownsMethod } from './calls';
import { applyLoad } from './apply';
import { decodeParts } from './decode_parts';
import { CheckFailure, CheckpointError, FormatError, SafetensorsError } from './errors';
import { FileTensors } from './file_tensors';
import { TensorClaims, checkOptimizer, checkParams, checkStateful } from './load_checks';
import { readManifest } from './manifest';
import { planOptimizerLoad } from './optimizer_load';
import { takeTurn } from './queue';
import { openForReading, readHeader } from './file_reads';
import { Slicer } from './yielding';

const op = 'loadCheckpoint';

export async function load(call: LoadCall): Promise<unknown> {
  // A stepAsync() running now is an error at once, not after the load's turn comes.
  try {
    lockOptimizer(call).release();
  } catch (e) {
    throw asCheckpointError(call.file, e);
  }
  const release = await takeTurn();
  let lock: CheckpointLock = { release: () => {}, unlocked: (fn) => fn() };
  try {
    lock = lockOptimizer(call);
    const fh = await openForReading(call.file);
    try {
      return await loadFrom(fh, call, lock);
    } finally {
      await fh.close().catch(() => {});
    }
  } catch (e) {
    throw asCheckpointError(call.file, e);
  } finally {
    lock.release();
    release();
  }
}

// A fused optimizer refuses steps and state changes until the load is done.
function lockOptimizer(call: LoadCall): CheckpointLock {
  const fused = fusedOptimizer(call.optimizer);
  if (!fused) return { release: () => {}, unlocked: (fn) => fn() };
  try {
    return fused.checkpointLock();
  } catch (e) {
    throw new CheckFailure('Busy', (e as Error).message, { cause: e });
  }
}

async function loadFrom(fh: FileHandle, call: LoadCall, lock: CheckpointLock): Promise<unknown> {
  // 1.
  const header = await readHeader(fh);
  const { metadata, tensors } = header.parsed;
  const slicer = new Slicer();
  const { manifest, crcs } = await readManifest(header.bytes, metadata, tensors, slicer);
  await slicer.yield();
  const claims = new TensorClaims(tensors);
  const paramValues = await checkParams(manifest, claims, call, slicer);
  const optimizer = await checkOptimizer(manifest, claims, call, slicer);
  const scheduler = checkStateful(call.scheduler, manifest.scheduler, 'scheduler', claims);
  const scaler = checkStateful(call.scaler, manifest.scaler, 'scaler', claims);
  const extra = manifest.extra === undefined ? [] : claims.claimAll(manifest.extra, 'extra');
  claims.checkAllClaimed();
  await slicer.yield();

  // 2.
  const file = await FileTensors.create(fh, header.parsed, crcs, call.stagingBytes, slicer);
  const fused = fusedOptimizer(call.optimizer);
  const native = fused !== undefined && ownsMethod(fused, 'loadStateDict') ? fused : undefined;
  const jsTensors = [...scheduler, ...scaler, ...extra, ...(optimizer?.dictTensors ?? [])];
  if (optimizer && !native) for (const e of optimizer.entries) for (const t of e.tensors) jsTensors.push(t);
  const values = await file.readValues(jsTensors);
  const parts = decodeParts(manifest, call, values);
  const opt = optimizer && (await planOptimizerLoad(optimizer, call, values, file, native, slicer));

  // 3. and 4.
  try {
    await file.verify(opt?.fresh ?? new Map(), slicer);
    return await applyLoad({ call, file, paramValues, parts, optimizer: opt, lock, slicer });
  } catch (e) {
    opt?.abort();
    throw e;
  }
}

function asCheckpointError(file: string, e: unknown): CheckpointError {
  if (e instanceof CheckpointError) return e;
  const cause = { cause: e };
  if (e instanceof CheckFailure) return new CheckpointError(op, file, e.message, e.code, cause);
  if (e instanceof SafetensorsError) return new CheckpointError(op, file, e.reason, e.code, cause);
  if (e instanceof FormatError) return new CheckpointError(op, file, e.message, e.code, cause);
  const system = typeof (e as NodeJS.ErrnoException)?.code === 'string';
  return new CheckpointError(op, file, (e as Error).message, system ? 'IoError' : 'InvalidManifest', cause);
}
