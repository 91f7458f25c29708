// Loading an optimizer's state from a checkpoint, one of two ways:
// - a fused optimizer (AdamW, AdamWDL, Lion, without an overridden loadStateDict) checks its
//   state dict with each state buffer as a stand-in (FusedOptimizer.checkpointPlanLoad), and
//   its buffers are then read straight from the file into native memory, no host copy;
// - any other optimizer gets its state dict with the buffers as typed arrays, through its
//   own loadStateDict().
import type { FusedOptimizer } from '../fused_optimizer';
import type { Parameter } from '../parameter';
import type { LoadCall } from './calls';
import { fail } from './errors';
import { type Destination, type FileTensors, stateConvert } from './file_tensors';
import { bf16BitsToFloat32, f16BitsToFloat32 } from './half';
import { type OptimizerPart, decodeValue } from './load_checks';
import { BufferSlot, CONVERT, TableEntry } from './native_io';
import type { TensorData } from './safetensors_header';
import type { Slicer } from './yielding';

export interface OptimizerLoad {
  /** State buffers created for the load, by the file's tensor index: filled while the file is checked. */
  fresh: Map<number, Destination>;
  /** The optimizer's existing buffers, by the file's tensor index: filled when the checkpoint is applied. */
  inPlace: Map<number, Destination>;
  /** The dict for loadStateDict() (not a fused optimizer). */
  dict?: object;
  /** Params whose value comes from their master (loadStateDict() writes it). */
  mastered: ReadonlySet<Parameter>;
  /** After the buffers are read: step counts, buffers, hyperparameters. */
  commit(paramLoaded: (p: Parameter) => boolean): void;
  abort(): void;
}

export async function planOptimizerLoad(
  part: OptimizerPart,
  call: LoadCall,
  values: ReadonlyMap<string, TensorData>,
  file: FileTensors,
  fused: FusedOptimizer<never, never, never> | undefined,
  slicer: Slicer,
): Promise<OptimizerLoad> {
  const resolve = (tensor: string) => values.get(tensor);
  const indexOf = new Map(call.flat!.map((p, i) => [p, i]));
  const param_groups = part.part.param_groups.map((g, gi) => ({
    ...(decodeValue(g.dict, `optimizer param_groups[${gi}]`, resolve) as Record<string, unknown>),
    params: call.optimizer!.paramGroups[gi].params.map((p) => indexOf.get(p)!),
  }));
  const others = decodeValue(part.part.dict, 'optimizer state dict', resolve) as Record<string, unknown>;
  const state: Record<number, unknown> = {};
  for (const e of part.entries) {
    if (slicer.due()) await slicer.yield();
    const where = `optimizer state of param '${e.param.name}'`;
    const lowBit = isLowBitState(e.json);
    const value = fused
      ? decodeValue(e.json, where, (tensor) => new BufferSlot(file.numelOf(tensor), tensor, file.dtypeOf(tensor)))
      : decodeValue(e.json, where, (tensor) => toStateArray(values.get(tensor)!, file.dtypeOf(tensor), lowBit));
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      fail('InvalidManifest', `the optimizer state of param '${e.param.name}' is not an object`);
    state[e.index] = value;
  }
  const dict = { ...others, state, param_groups };
  await slicer.yield();
  return fused ? planFused(fused, dict, state, file, call.flat!, slicer) : planDict(dict, part);
}

async function planFused(
  fused: FusedOptimizer<never, never, never>,
  dict: object,
  state: Record<number, unknown>,
  file: FileTensors,
  flat: readonly Parameter[],
  slicer: Slicer,
): Promise<OptimizerLoad> {
  let plan: Awaited<ReturnType<typeof fused.checkpointPlanLoad>>;
  try {
    plan = await fused.checkpointPlanLoad(dict as never, () => (slicer.due() ? slicer.yield() : undefined));
  } catch (e) {
    return fail('Rejected', `the optimizer rejected its state (${(e as Error).message}); nothing was changed`, e);
  }
  const fresh = new Map<number, Destination>();
  const inPlace = new Map<number, Destination>();
  // Each slot's tensor, by index in the file, and how it becomes fp32 unless it is read raw
  // (low-bit state; its dtype was checked) (one name lookup per tensor).
  const slots: number[] = [];
  const converts: number[] = [];
  for (const { slots: list } of plan.targets) {
    if (slicer.due()) await slicer.yield();
    for (const { tensor, raw, dtypes, what } of list) {
      const index = file.indexOf(tensor);
      const dtype = file.dtypeAt(index);
      const convert = raw ? CONVERT.none : stateConvert(dtype);
      if (convert === undefined || !dtypes.includes(dtype))
        fail(
          'OptimizerMismatch',
          `tensor ${JSON.stringify(tensor)} is ${dtype}; ${what} must be ${dtypes.length > 1 ? 'a float type' : dtypes[0]}`,
        );
      slots.push(index);
      converts.push(convert);
    }
  }
  await slicer.yield();
  const staged = plan.stage();
  try {
    for (let entry = 0; entry < slots.length; entry++) {
      if (slicer.due()) await slicer.yield();
      const place = new TableEntry(staged.table, entry);
      (staged.fresh[entry] ? fresh : inPlace).set(slots[entry], { place, convert: converts[entry] });
    }
  } catch (e) {
    plan.abort();
    throw e;
  }
  return {
    fresh,
    inPlace,
    mastered: new Set(),
    commit: (paramLoaded) => plan.commit((index) => paramLoaded(flat[index])),
    abort: () => plan.abort(),
  };
}

function planDict(dict: object, part: OptimizerPart): OptimizerLoad {
  const mastered = new Set<Parameter>();
  for (const e of part.entries) {
    const json = e.json;
    if (
      json !== null &&
      typeof json === 'object' &&
      !Array.isArray(json) &&
      'master' in json &&
      e.param.data.dtype !== 'float32'
    )
      mastered.add(e.param);
  }
  return { fresh: new Map(), inPlace: new Map(), dict, mastered, commit: () => {}, abort: () => {} };
}

/** Whether a param's saved state is kept in bfloat16 or 8-bit (its buffers are bits, not values). */
function isLowBitState(json: unknown): boolean {
  const d = json !== null && typeof json === 'object' ? (json as Record<string, unknown>).stateDtype : undefined;
  return d === 'bfloat16' || d === 'uint8';
}

/** fp32 optimizer state: other float types are converted, integer ones kept; low-bit state is kept as it is. */
function toStateArray(data: TensorData, dtype: string, lowBit: boolean): unknown {
  if (lowBit) return data;
  if (dtype === 'F64') return Float32Array.from(data as Float64Array);
  if (dtype === 'BF16') return bf16BitsToFloat32(data as Uint16Array);
  if (dtype === 'F16') return f16BitsToFloat32(data as Uint16Array);
  return data;
}
