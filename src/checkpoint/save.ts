// saveCheckpoint, in phases: collect (the manifest, and every tensor's source: params and a
// fused optimizer's state buffers in native memory, everything else from JavaScript), lay out
// the file, then write it atomically (atomic.ts) with the tensors streamed natively
// (native_io.ts), or, for a background save, copy the native tensors first and write the
// copy while training goes on.
import type { Optimizer, ParamGroup } from '../optimizer';
import { hookOptimizerStep, optimizerStepCounter } from '../schedulers/optimizer_hook';
import { type FileHandle, atomicWrite } from './atomic';
import { type BackgroundSave, type SaveCall, className, fusedOptimizer, ownsMethod } from './calls';
import { type EncodedTensor, type Json, StateEncoder } from './codec';
import { CheckpointError } from './errors';
import { type CheckpointLayout, layoutCheckpoint } from './layout';
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  MANIFEST_KEY,
  type Manifest,
  type ManifestGroup,
  type ManifestOptimizer,
  type ManifestParam,
  PARAM_DTYPES,
} from './manifest';
import type { CheckpointState } from '../fused_optimizer';
import type { NativeTensorHandle } from '../native';
import type { Parameter } from '../parameter';
import { NativeBuffer, TableEntry, type TensorPlace, snapshotTensors, writeTensors } from './native_io';
import { backgroundWritten, takeTurn, throwUnreportedFailure } from './queue';
import { fileOrder } from './safetensors_header';

const op = 'saveCheckpoint';

export async function save(call: SaveCall): Promise<void | BackgroundSave> {
  probeOptimizer(call);
  const release = await takeTurn();
  let handedOver = false;
  try {
    throwUnreportedFailure(op, call.file);
    if (call.background) {
      const started = await startInBackground(call, release);
      handedOver = true;
      return started;
    }
    // The file is opened first, so that the state is read and the transfer (which pins the
    // params) starts in one synchronous block: nothing can step or write in between.
    await writeFile(call, async (fh) => {
      const c = collect(call);
      let crcs: Uint32Array;
      try {
        crcs = await writeTensors(fh.fd, c.sources, c.layout.offsets, call.stagingBytes);
      } finally {
        c.unlock(); // the data is in the file: training may go on during the fsync
      }
      c.checkNotStepped();
      c.layout.seal(crcs);
      await writeAll(fh, c.layout.header, 0);
    });
  } finally {
    if (!handedOver) release();
  }
}

// Snapshot now (host copies of every native tensor), write later.
async function startInBackground(call: SaveCall, release: () => void): Promise<BackgroundSave> {
  const c = collect(call);
  let sources: TensorPlace[];
  try {
    sources = await snapshot(c.sources);
  } finally {
    c.unlock();
  }
  try {
    c.checkNotStepped();
  } catch (e) {
    throw new CheckpointError(op, call.file, (e as Error).message, 'Busy');
  }
  const write = writeFile(call, async (fh) => {
    const crcs = await writeTensors(fh.fd, sources, c.layout.offsets, call.stagingBytes, true);
    c.layout.seal(crcs);
    await writeAll(fh, c.layout.header, 0);
  });
  return { written: backgroundWritten(write, release) };
}

// A stepAsync() of a fused optimizer that is running now is an error at once (a CheckpointError
// naming the file), rather than an error or a wait after the save's turn comes.
function probeOptimizer(call: SaveCall): void {
  const fused = fusedOptimizer(call.optimizer);
  if (!fused) return;
  try {
    fused.checkpointLock().release();
  } catch (e) {
    throw new CheckpointError(op, call.file, (e as Error).message, 'Busy', { cause: e });
  }
}

interface Collected {
  /** Each tensor's bytes, in file order. */
  sources: TensorPlace[];
  layout: CheckpointLayout;
  /** Lets the optimizer step again (idempotent). */
  unlock: () => void;
  /** Throws if an optimizer without a lock (not a fused one) stepped since collect(). */
  checkNotStepped: () => void;
}

/** Everything the file will hold, read now, synchronously: one consistent state. */
function collect(call: SaveCall): Collected {
  const encoder = new StateEncoder();
  const manifest: Manifest = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, params: [] };
  const params = collectParams(call, manifest.params, encoder);
  const guard = guardOptimizer(call);
  try {
    if (call.optimizer) manifest.optimizer = collectOptimizer(call, encoder);
    if (call.scheduler)
      manifest.scheduler = {
        class: className(call.scheduler),
        state_dict: encoder.encode(call.scheduler.stateDict(), 'scheduler', 'scheduler state'),
      };
    if (call.scaler)
      manifest.scaler = {
        class: className(call.scaler),
        state_dict: encoder.encode(call.scaler.stateDict(), 'scaler', 'scaler state'),
      };
    if (call.extra !== undefined) manifest.extra = encoder.encode(call.extra, 'extra', 'extra');
  } catch (e) {
    guard.unlock();
    throw e;
  }
  const tensors = fileOrder([...params, ...encoder.tensors]);
  const sources = tensors.map((t) => (t.source instanceof NativeBuffer ? t.source.place : t.source));
  const layout = layoutCheckpoint(tensors, {
    format: CHECKPOINT_FORMAT,
    format_version: String(CHECKPOINT_VERSION),
    [MANIFEST_KEY]: JSON.stringify(manifest),
  });
  return { sources, layout, ...guard };
}

function collectParams(call: SaveCall, out: ManifestParam[], encoder: StateEncoder): EncodedTensor[] {
  return [...call.params.values()].map((p) => {
    const dtype = PARAM_DTYPES[p.data.dtype];
    const tensor = encoder.reserve(`param.${p.name}`);
    out.push({ name: p.name, dtype: p.data.dtype, shape: [...p.data.shape], tensor });
    const source = new NativeBuffer(p.data.handle, dtype, p.data.numel);
    return {
      name: tensor,
      dtype,
      source,
      byteLength: source.byteLength,
      numel: p.data.numel,
      shape: [...p.data.shape],
    };
  });
}

// A fused optimizer refuses steps (natively) until unlock(); any other optimizer with step()
// has its steps counted, and a step during the save fails it.
function guardOptimizer(call: SaveCall): Pick<Collected, 'unlock' | 'checkNotStepped'> {
  const fused = fusedOptimizer(call.optimizer);
  if (fused) {
    try {
      const lock = fused.checkpointLock();
      return { unlock: () => lock.release(), checkNotStepped: () => {} };
    } catch (e) {
      throw new CheckpointError(op, call.file, (e as Error).message, 'Busy', { cause: e });
    }
  }
  const o = call.optimizer as unknown as Optimizer<ParamGroup> | undefined;
  if (!o || typeof (o as { step?: unknown }).step !== 'function')
    return { unlock: () => {}, checkNotStepped: () => {} };
  hookOptimizerStep(o);
  const counter = optimizerStepCounter(o);
  const atStart = counter.count;
  return {
    unlock: () => {},
    checkNotStepped: () => {
      if (counter.count !== atStart)
        throw new Error(
          'the optimizer stepped while the checkpoint was being written; await saveCheckpoint() before the next step',
        );
    },
  };
}

type TorchDict = {
  state: Record<string, unknown>;
  param_groups: Array<Record<string, unknown>>;
  [key: string]: unknown;
};

function collectOptimizer(call: SaveCall, encoder: StateEncoder): ManifestOptimizer {
  const optimizer = call.optimizer!;
  const fused = fusedOptimizer(optimizer);
  let sd: TorchDict;
  let native: CheckpointState | undefined;
  try {
    if (fused && ownsMethod(fused, 'stateDict')) native = fused.checkpointState();
    sd = (native ? native.dict : optimizer.stateDict()) as TorchDict;
  } catch (e) {
    throw new CheckpointError(op, call.file, `cannot read the optimizer's state (${(e as Error).message})`, 'Busy', {
      cause: e,
    });
  }
  if (sd === null || typeof sd !== 'object' || typeof sd.state !== 'object' || !Array.isArray(sd.param_groups))
    throw new TypeError(`${op}: optimizer.stateDict() must return { state, param_groups } in torch's layout`);
  if (sd.param_groups.length !== optimizer.paramGroups.length)
    throw new Error(`${op}: optimizer.stateDict() has a different number of param groups than the optimizer`);
  const param_groups: ManifestGroup[] = sd.param_groups.map((g, gi) => {
    const { params: ids, ...rest } = g;
    const names = optimizer.paramGroups[gi].params.map((p) => p.name);
    if (!Array.isArray(ids) || ids.length !== names.length)
      throw new Error(`${op}: optimizer.stateDict() param_groups[${gi}] does not list the group's params`);
    const dict = encoder.encode(rest, `optimizer.param_groups.${gi}`, `optimizer param_groups[${gi}]`);
    return { dict: dict as { [key: string]: Json }, params: ids as number[], param_names: names };
  });
  const state = native ? nativeState(native, call.flat!, encoder) : encodedState(sd.state, call.flat!, encoder);
  const { state: _state, param_groups: _groups, ...others } = sd;
  const dict = encoder.encode(others, 'optimizer', 'optimizer state dict') as { [key: string]: Json };
  return { class: className(optimizer), dict, param_groups, state };
}

function encodedState(
  sdState: Record<string, unknown>,
  flat: readonly Parameter[],
  encoder: StateEncoder,
): ManifestOptimizer['state'] {
  const state: ManifestOptimizer['state'] = {};
  for (const [key, entry] of Object.entries(sdState)) {
    const p = flat[Number(key)];
    if (!p)
      throw new Error(
        `${op}: optimizer.stateDict() has state for param index ${key}, which the optimizer does not have`,
      );
    state[p.name] = encoder.encode(entry, `optimizer.state.${p.name}`, `optimizer state of param '${p.name}'`);
  }
  return state;
}

// A fused optimizer's state, as encoding its stateDict() would give, with each buffer written
// from the optimizer's own memory (one tensor table for all).
function nativeState(
  st: CheckpointState,
  flat: readonly Parameter[],
  encoder: StateEncoder,
): ManifestOptimizer['state'] {
  const state: ManifestOptimizer['state'] = {};
  let entry = 0;
  flat.forEach((p, i) => {
    if (st.steps[i] < 0) return;
    const out: { [key: string]: Json } = st.hasStep ? { step: st.steps[i] } : {};
    const numel = p.data.numel;
    st.names.forEach((key, bit) => {
      if (key === undefined || !(st.masks[i] & (1 << bit))) return;
      const name = encoder.reserve(`optimizer.state.${p.name}.${key}`);
      const source = new NativeBuffer(new TableEntry(st.table, entry++), 'F32', numel);
      encoder.tensors.push({ name, dtype: 'F32', source, byteLength: source.byteLength, numel, shape: [numel] });
      out[key] = { $tensor: name };
    });
    state[p.name] = out;
  });
  return state;
}

/** Host copies of the native sources (typed arrays too: the caller may change them once we return). */
async function snapshot(sources: readonly TensorPlace[]): Promise<TensorPlace[]> {
  const native = sources.filter((s) => !ArrayBuffer.isView(s)) as Array<NativeTensorHandle | TableEntry>;
  const copies = await snapshotTensors(native);
  let next = 0;
  return sources.map((s) => (ArrayBuffer.isView(s) ? (s as Uint8Array).slice() : copies[next++]));
}

// atomicWrite, with failures as CheckpointErrors (bad calls stay TypeErrors and RangeErrors).
async function writeFile(call: SaveCall, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  try {
    await atomicWrite(call.file, write);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError || e instanceof CheckpointError) throw e;
    throw new CheckpointError(
      op,
      call.file,
      `${(e as Error).message}; the previous file (if any) is unchanged`,
      'WriteFailed',
      { cause: e },
    );
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(16 << 20, bytes.length - done), position + done);
    done += bytesWritten;
  }
}
