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
  ChunkTexts,
  FLOAT32_STATE_VERSION,
  type ManifestGroup,
  type ManifestOptimizer,
  type ManifestStateful,
  type ManifestToWrite,
  PARAM_DTYPES,
  manifestMetadata,
  stateChunksOf,
} from './manifest';
import type { CheckpointState } from '../fused_optimizer';
import { type NativeTensorHandle, type NativeTensorTable, native } from '../native';
import type { Parameter } from '../parameter';
import { NativeBuffer, TableEntry, type TensorPlace, snapshotTensors, writeTensors } from './native_io';
import { backgroundWritten, takeTurn, throwUnreportedFailure } from './queue';
import { Slicer } from './yielding';
import { type SafetensorsDType, fileOrder } from './safetensors_header';
import { STATE_DTYPES, quantBlocks } from '../state_dtype';

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
    await writeFile(call, async (fh) => {
      const c = await collect(call);
      let crcs: Uint32Array;
      try {
        crcs = await writeTensors(fh.fd, c.sources, c.layout.offsets, call.stagingBytes);
      } finally {
        c.release(); // the data is in the file: training may go on during the fsync
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
  const c = await collect(call);
  let sources: TensorPlace[];
  try {
    sources = await snapshot(c.sources);
  } finally {
    c.release();
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
  /** Lets the optimizer step and the params be written again (idempotent). */
  release: () => void;
  /** Throws if an optimizer without a lock (not a fused one) stepped since the capture. */
  checkNotStepped: () => void;
}

/**
 * Everything the file will hold: captured in one synchronous block (one consistent state:
 * the optimizer locked, the params pinned, the JSON parts encoded, their typed arrays copied),
 * then formatted a slice at a time.
 */
async function collect(call: SaveCall): Promise<Collected> {
  const c = capture(call);
  try {
    const slicer = new Slicer();
    const { tensors, chunks: paramChunks } = await paramTensors(call, c.table, c.encoder, slicer);
    const { scheduler, scaler, extra } = c;
    const manifest: ManifestToWrite = { format: CHECKPOINT_FORMAT, version: FLOAT32_STATE_VERSION, paramChunks };
    if (c.optimizer) {
      const { native, state, ...part } = c.optimizer;
      const stateChunks = native
        ? await nativeState(native, call.flat!, c.table, call.params.size, c.encoder, slicer)
        : await stateChunksOf(state, slicer);
      manifest.optimizer = { ...part, stateChunks };
      if (native && hasLowBitState(native)) manifest.version = CHECKPOINT_VERSION;
    }
    if (scheduler) manifest.scheduler = scheduler;
    if (scaler) manifest.scaler = scaler;
    if (extra !== undefined) manifest.extra = extra;
    const ordered = fileOrder(tensors.concat(c.encoder.tensors));
    const layout = await layoutCheckpoint(
      ordered,
      { format: CHECKPOINT_FORMAT, format_version: String(manifest.version), ...manifestMetadata(manifest) },
      slicer,
    );
    const sources = ordered.map((t) => (t.source instanceof NativeBuffer ? t.source.place : t.source));
    return { sources, layout, release: c.release, checkNotStepped: c.checkNotStepped };
  } catch (e) {
    c.release();
    throw e;
  }
}

interface Captured {
  encoder: StateEncoder;
  /** The params' tensors, then the optimizer's state buffers, pinned. */
  table: NativeTensorTable;
  optimizer?: ManifestOptimizer & { native?: CheckpointState };
  scheduler?: ManifestStateful;
  scaler?: ManifestStateful;
  extra?: Json;
  release: () => void;
  checkNotStepped: () => void;
}

function capture(call: SaveCall): Captured {
  const encoder = new StateEncoder();
  const guard = guardOptimizer(call);
  try {
    const out: Omit<Captured, 'table' | 'release' | 'checkNotStepped'> = { encoder };
    if (call.optimizer) out.optimizer = collectOptimizer(call, encoder);
    const fromJavaScript = encoder.tensors.length; // later ones may be the caller's own arrays
    if (call.scheduler)
      out.scheduler = {
        class: className(call.scheduler),
        state_dict: encoder.encode(call.scheduler.stateDict(), 'scheduler', 'scheduler state'),
      };
    if (call.scaler)
      out.scaler = {
        class: className(call.scaler),
        state_dict: encoder.encode(call.scaler.stateDict(), 'scaler', 'scaler state'),
      };
    if (call.extra !== undefined) out.extra = encoder.encode(call.extra, 'extra', 'extra');
    for (const t of encoder.tensors.slice(fromJavaScript))
      if (ArrayBuffer.isView(t.source)) t.source = t.source.slice();
    const handles = [...call.params.values()].map((p) => p.data.handle);
    const table = native().checkpointPin(handles, out.optimizer?.native?.table);
    const release = () => {
      native().checkpointUnpin(table);
      guard.unlock();
    };
    return { ...out, table, release, checkNotStepped: guard.checkNotStepped };
  } catch (e) {
    guard.unlock();
    throw e;
  }
}

// The params' tensors (entries 0.. of the pinned table) and their manifest chunks, as text.
// Their names, "param.<name>", are unique: param names are, and no other tensor's name starts
// with "param." (the encoder's names start with "optimizer.", "scheduler.", "scaler." or
// "extra."; checked, to keep it so).
async function paramTensors(
  call: SaveCall,
  table: NativeTensorTable,
  encoder: StateEncoder,
  slicer: Slicer,
): Promise<{ tensors: EncodedTensor[]; chunks: string[] }> {
  const direct = !encoder.hasNameStartingWith('param.');
  const tensors: EncodedTensor[] = [];
  const texts = new ChunkTexts('array');
  let i = 0;
  for (const p of call.params.values()) {
    if (slicer.due()) await slicer.yield();
    const data = p.data;
    const dtype = PARAM_DTYPES[data.dtype];
    const name = direct ? `param.${p.name}` : encoder.reserve(`param.${p.name}`);
    const shape = [...data.shape];
    const numel = data.numel;
    const quoted = JSON.stringify(name);
    texts.add(
      `{"name":${JSON.stringify(p.name)},"dtype":"${data.dtype}","shape":[${shape.join(',')}],"tensor":${quoted}}`,
    );
    tensors.push({
      name,
      dtype,
      source: new TableEntry(table, i++),
      byteLength: numel * (dtype === 'F32' ? 4 : 2),
      numel,
      shape,
    });
  }
  return { tensors, chunks: texts.done() };
}

// A fused optimizer refuses steps (natively) until unlock(); any other optimizer with step()
// has its steps counted, and a step during the save fails it.
function guardOptimizer(call: SaveCall): { unlock: () => void; checkNotStepped: () => void } {
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

function collectOptimizer(call: SaveCall, encoder: StateEncoder): ManifestOptimizer & { native?: CheckpointState } {
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
  // A fused optimizer's state is formatted later (nativeState); its buffers come after the
  // group dicts' tensors and before the other entries' in the file, as encoding would place them.
  const state = native ? {} : encodedState(sd.state, call.flat!, encoder);
  const stateAt = encoder.tensors.length;
  const { state: _state, param_groups: _groups, ...others } = sd;
  const dict = encoder.encode(others, 'optimizer', 'optimizer state dict') as { [key: string]: Json };
  if (native) (native as CheckpointState & { insertAt?: number }).insertAt = stateAt;
  return { class: className(optimizer), dict, param_groups, state, native };
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
// from the optimizer's own memory (entries of the pinned table, after the params); returns
// the manifest's state chunks, built as text. The buffers' names,
// "optimizer.state.<param>.<key>", are unique (param names are, and keys have no "."), and
// distinct from every other tensor's unless the encoder made one with that prefix (checked).
async function nativeState(
  st: CheckpointState & { insertAt?: number },
  flat: readonly Parameter[],
  table: NativeTensorTable,
  paramCount: number,
  encoder: StateEncoder,
  slicer: Slicer,
): Promise<string[]> {
  const direct = !encoder.hasNameStartingWith('optimizer.state.');
  const texts = new ChunkTexts('object');
  const tensors: EncodedTensor[] = [];
  const keys = st.names.map((key) => (key === undefined ? undefined : JSON.stringify(key)));
  let entry = paramCount;
  for (let i = 0; i < flat.length; i++) {
    if (slicer.due()) await slicer.yield();
    if (st.steps[i] < 0) continue;
    const p = flat[i];
    const numel = p.data.numel;
    const mask = st.masks[i];
    const stateDtype = STATE_DTYPES[st.stateDtypes[i]];
    const blockSize = st.blockSizes[i];
    const fields: string[] = st.hasStep ? [`"step":${st.steps[i]}`] : [];
    if (stateDtype !== 'float32') fields.push(`"stateDtype":"${stateDtype}"`);
    if (stateDtype === 'uint8') fields.push(`"blockSize":${blockSize}`);
    // One tensor per table entry, in the table's order (native/addon/optimizer_checkpoint.h).
    const add = (key: string, dtype: SafetensorsDType, count: number, bytesEach: number) => {
      const base = `optimizer.state.${p.name}.${key}`;
      const name = direct ? base : encoder.reserve(base);
      const source = new TableEntry(table, entry++);
      tensors.push({ name, dtype, source, byteLength: bytesEach * count, numel: count, shape: [count] });
      fields.push(`${JSON.stringify(key)}:{"$tensor":${JSON.stringify(name)}}`);
    };
    for (let bit = 0; bit < keys.length; bit++) {
      if (keys[bit] === undefined || !(mask & (1 << bit))) continue;
      const key = st.names[bit]!;
      if (key === 'master' || stateDtype === 'float32') add(key, 'F32', numel, 4);
      else if (stateDtype === 'bfloat16') add(key, 'BF16', numel, 2);
      else {
        add(key, 'U8', numel, 1);
        add(`${key}_absmax`, 'F32', quantBlocks(numel, blockSize), 4);
      }
    }
    texts.add(`${JSON.stringify(p.name)}:{${fields.join(',')}}`);
  }
  // In file order where encoding would have put them (no spread: there may be 300k).
  const after = encoder.tensors.splice(st.insertAt ?? encoder.tensors.length);
  for (const t of tensors) encoder.tensors.push(t);
  for (const t of after) encoder.tensors.push(t);
  return texts.done();
}

/** Whether a param with state keeps it in bfloat16 or 8-bit (the file is then version 3). */
function hasLowBitState(st: CheckpointState): boolean {
  for (let i = 0; i < st.steps.length; i++) if (st.steps[i] >= 0 && st.stateDtypes[i] !== 0) return true;
  return false;
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
