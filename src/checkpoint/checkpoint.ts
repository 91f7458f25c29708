// saveCheckpoint / loadCheckpoint: one safetensors file with the param values, the
// optimizer's state and param groups, the scheduler's and scaler's state, and anything else
// the caller wants back (`extra`). docs/checkpoints.md describes the format.
//
// Saving streams tensor by tensor into a temporary file that is renamed over the target
// (atomic.ts), and records a CRC-32 of every tensor and of the manifest. Loading checks the
// whole file (header, bounds, checksums, names, shapes, dtypes) and everything it is asked
// to restore before changing anything, then applies it, or changes nothing and throws a
// CheckpointError naming the file and the problem.
import { checkKeys } from '../checks';
import { type DType } from '../dtype';
import { Parameter } from '../parameter';
import { LRScheduler, PARSE_STATE_DICT } from '../schedulers/lr_scheduler';
import { hookOptimizerStep, optimizerStepCounter } from '../schedulers/optimizer_hook';
import type { Optimizer, ParamGroup } from '../optimizer';
import { type Json, StateEncoder, decodeState } from './codec';
import { crc32, crcHex } from './crc32';
import { bf16BitsToFloat32, f16BitsToFloat32 } from './half';
import {
  type PlannedTensor,
  type SafetensorsDType,
  SafetensorsError,
  SafetensorsFile,
  type TensorData,
  fileOrder,
  numelOf,
  typedArrayOf,
  writeSafetensorsStream,
} from './safetensors';

/** The `format` metadata value of a fused-optim checkpoint. */
export const CHECKPOINT_FORMAT = 'fused-optim/checkpoint';
/** The format version this code writes (and the newest it reads). */
export const CHECKPOINT_VERSION = 1;

export const MANIFEST_KEY = 'fused_optim.manifest';
export const MANIFEST_CRC_KEY = 'fused_optim.manifest_crc32';

/** Anything with torch-style state dicts: schedulers, loss scalers. */
export interface Stateful {
  stateDict(): unknown;
  loadStateDict(stateDict: never): void;
}

/** An optimizer: its param groups (for the names of its params) and state dicts in torch's layout. */
export interface CheckpointOptimizer extends Stateful {
  readonly paramGroups: ReadonlyArray<{ readonly params: readonly Parameter[] }>;
}

export interface SaveCheckpointOptions {
  /** The params whose values are saved, by name (names must be unique and non-empty). */
  params: Iterable<Parameter>;
  /** Its params must all be among `params`. */
  optimizer?: CheckpointOptimizer;
  scheduler?: Stateful;
  /** A loss scaler (anything with stateDict() / loadStateDict()). */
  scaler?: Stateful;
  /** Anything JSON-like (typed arrays become tensors); loadCheckpoint returns it. */
  extra?: unknown;
}

export interface LoadCheckpointOptions {
  params: Iterable<Parameter>;
  optimizer?: CheckpointOptimizer;
  scheduler?: Stateful;
  scaler?: Stateful;
  /**
   * true (default): the checkpoint's params and `params` must be the same names. false:
   * params missing from the checkpoint keep their values, and checkpoint params that are not
   * in `params` are ignored.
   */
  strict?: boolean;
}

/** A checkpoint that cannot be written or read; `file` names it and `reason` says why. */
export class CheckpointError extends Error {
  readonly file: string;
  readonly reason: string;
  constructor(operation: string, file: string, reason: string, options?: { cause?: unknown }) {
    super(`${operation}: ${file}: ${reason}`, options);
    this.name = 'CheckpointError';
    this.file = file;
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------
// The manifest: everything but the tensor bytes, JSON in the header's __metadata__.

interface ManifestTensor {
  dtype: SafetensorsDType;
  shape: number[];
  crc32: string;
}
interface ManifestParam {
  name: string;
  dtype: DType;
  shape: number[];
  tensor: string;
}
interface ManifestGroup {
  /** The group's entries of the torch state dict, but params, encoded. */
  dict: { [key: string]: Json };
  /** torch's index of each param of the group (its position across the groups). */
  params: number[];
  param_names: string[];
}
interface ManifestOptimizer {
  class: string;
  /** The state dict's other top-level entries (e.g. an RNG stream), encoded. */
  dict: { [key: string]: Json };
  param_groups: ManifestGroup[];
  /** Per-param state, keyed by param name, encoded. */
  state: { [name: string]: Json };
}
interface ManifestStateful {
  class: string;
  state_dict: Json;
}
interface Manifest {
  format: string;
  version: number;
  tensors: { [name: string]: ManifestTensor };
  params: ManifestParam[];
  optimizer?: ManifestOptimizer;
  scheduler?: ManifestStateful;
  scaler?: ManifestStateful;
  extra?: Json;
}

const PARAM_DTYPES: Record<DType, SafetensorsDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

function paramTensorName(name: string): string {
  return `param.${name}`;
}

function className(o: object): string {
  return (o.constructor as { name?: string } | undefined)?.name || 'Object';
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `a ${className(v as object)}`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

// ---------------------------------------------------------------------------------------
// Argument checks (TypeError / RangeError, before any file is touched)

function checkParams(params: unknown, op: string): Map<string, Parameter> {
  if (
    params === null ||
    typeof params !== 'object' ||
    typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
  ) {
    throw new TypeError(`${op}: params must be an iterable of Parameters, got ${describe(params)}`);
  }
  const byName = new Map<string, Parameter>();
  let i = 0;
  for (const p of params as Iterable<unknown>) {
    if (!(p instanceof Parameter)) throw new TypeError(`${op}: params[${i}] is not a Parameter, got ${describe(p)}`);
    if (typeof p.name !== 'string' || p.name === '')
      throw new TypeError(`${op}: params[${i}] has no name; checkpoints store params by name`);
    const other = byName.get(p.name);
    if (other === p) throw new RangeError(`${op}: param '${p.name}' is listed twice`);
    if (other) throw new RangeError(`${op}: two params are named '${p.name}'; names must be unique`);
    p.data.checkAlive(`${op}: param '${p.name}' data`);
    byName.set(p.name, p);
    i++;
  }
  return byName;
}

function checkStateful(o: unknown, what: string, op: string): void {
  if (o === undefined) return;
  const s = o as Partial<Stateful> | null;
  if (
    s === null ||
    typeof s !== 'object' ||
    typeof s.stateDict !== 'function' ||
    typeof s.loadStateDict !== 'function'
  ) {
    throw new TypeError(`${op}: ${what} must have stateDict() and loadStateDict(), got ${describe(o)}`);
  }
}

/** The optimizer's params in torch's index order; each must be among `params` (the same object). */
function optimizerParams(optimizer: CheckpointOptimizer, params: Map<string, Parameter>, op: string): Parameter[] {
  checkStateful(optimizer, 'optimizer', op);
  if (!Array.isArray(optimizer.paramGroups)) throw new TypeError(`${op}: optimizer must have paramGroups`);
  const flat: Parameter[] = [];
  for (const g of optimizer.paramGroups) for (const p of g.params) flat.push(p);
  for (const p of flat) {
    if (params.get(p.name) !== p) {
      throw new TypeError(
        p.name === ''
          ? `${op}: the optimizer has a param without a name; checkpoints store params by name`
          : `${op}: the optimizer's param '${p.name}' is not among params${params.has(p.name) ? ' (a different Parameter has its name)' : ''}`,
      );
    }
  }
  return flat;
}

// ---------------------------------------------------------------------------------------
// saveCheckpoint

/**
 * Saves params, optimizer, scheduler, scaler and `extra` to one safetensors file, atomically:
 * a crash or kill at any moment leaves the previous file or the new one, never a broken
 * one. Tensors are fetched and written one at a time. Do not step the optimizer or write the
 * params until the promise resolves (a step during the save is detected and fails the save).
 */
export async function saveCheckpoint(file: string, options: SaveCheckpointOptions): Promise<void> {
  const op = 'saveCheckpoint';
  if (typeof file !== 'string' || file === '') throw new TypeError(`${op}: file must be a non-empty path string`);
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${op}: options must be { params, optimizer?, scheduler?, scaler?, extra? }`);
  checkKeys(options as unknown as Record<string, unknown>, `${op}: options`, [
    'params',
    'optimizer',
    'scheduler',
    'scaler',
    'extra',
  ]);
  const params = checkParams(options.params, op);
  const { optimizer, scheduler, scaler, extra } = options;
  const flat = optimizer === undefined ? undefined : optimizerParams(optimizer, params, op);
  checkStateful(scheduler, 'scheduler', op);
  checkStateful(scaler, 'scaler', op);

  const planned: PlannedTensor[] = [];
  const manifestTensors: Manifest['tensors'] = {};
  const manifestParams: ManifestParam[] = [];
  for (const p of params.values()) {
    const dtype = PARAM_DTYPES[p.data.dtype];
    const shape = [...p.data.shape];
    const tensor = paramTensorName(p.name);
    manifestParams.push({ name: p.name, dtype: p.data.dtype, shape, tensor });
    planned.push({
      name: tensor,
      dtype,
      shape,
      byteLength: p.data.numel * (dtype === 'F32' ? 4 : 2),
      produce: () => (p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits()),
    });
  }

  // Everything else is read now, synchronously, so it is one consistent snapshot.
  const encoder = new StateEncoder(planned.map((t) => t.name));
  const manifest: Manifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    tensors: manifestTensors,
    params: manifestParams,
  };
  let stepCounter: { count: number } | undefined;
  let stepsAtStart = 0;
  if (optimizer !== undefined) {
    let sd: { state: Record<string, unknown>; param_groups: Array<Record<string, unknown>>; [key: string]: unknown };
    try {
      sd = optimizer.stateDict() as typeof sd;
    } catch (e) {
      throw new Error(`${op}: cannot read the optimizer's state (${(e as Error).message})`, { cause: e });
    }
    if (sd === null || typeof sd !== 'object' || typeof sd.state !== 'object' || !Array.isArray(sd.param_groups)) {
      throw new TypeError(`${op}: optimizer.stateDict() must return { state, param_groups } in torch's layout`);
    }
    if (sd.param_groups.length !== optimizer.paramGroups.length)
      throw new Error(`${op}: optimizer.stateDict() has a different number of param groups than the optimizer`);
    const groups: ManifestGroup[] = sd.param_groups.map((g, gi) => {
      const { params: ids, ...rest } = g;
      const names = optimizer.paramGroups[gi].params.map((p) => p.name);
      if (!Array.isArray(ids) || ids.length !== names.length)
        throw new Error(`${op}: optimizer.stateDict() param_groups[${gi}] does not list the group's params`);
      return {
        dict: encoder.encode(rest, `optimizer.param_groups.${gi}`, `optimizer param_groups[${gi}]`) as {
          [key: string]: Json;
        },
        params: ids as number[],
        param_names: names,
      };
    });
    const state: ManifestOptimizer['state'] = {};
    for (const [key, entry] of Object.entries(sd.state)) {
      const p = flat![Number(key)];
      if (!p)
        throw new Error(
          `${op}: optimizer.stateDict() has state for param index ${key}, which the optimizer does not have`,
        );
      state[p.name] = encoder.encode(entry, `optimizer.state.${p.name}`, `optimizer state of param '${p.name}'`);
    }
    const { state: _state, param_groups: _groups, ...others } = sd;
    const dict = encoder.encode(others, 'optimizer', 'optimizer state dict') as { [key: string]: Json };
    manifest.optimizer = { class: className(optimizer), dict, param_groups: groups, state };
    // A step while the file is written would mix states: count steps, fail the save if any.
    if (typeof (optimizer as { step?: unknown }).step === 'function') {
      hookOptimizerStep(optimizer as unknown as Optimizer<ParamGroup>);
      stepCounter = optimizerStepCounter(optimizer as unknown as Optimizer<ParamGroup>);
      stepsAtStart = stepCounter.count;
    }
  }
  if (scheduler !== undefined)
    manifest.scheduler = {
      class: className(scheduler),
      state_dict: encoder.encode(scheduler.stateDict(), 'scheduler', 'scheduler state'),
    };
  if (scaler !== undefined)
    manifest.scaler = {
      class: className(scaler),
      state_dict: encoder.encode(scaler.stateDict(), 'scaler', 'scaler state'),
    };
  if (extra !== undefined) manifest.extra = encoder.encode(extra, 'extra', 'extra');

  for (const t of encoder.tensors) {
    let data: TensorData | undefined = t.data;
    planned.push({
      name: t.name,
      dtype: t.dtype,
      shape: [data.length],
      byteLength: data.byteLength,
      produce: () => {
        const d = data!;
        data = undefined; // written once; let it be collected
        return d;
      },
    });
  }
  const ordered = fileOrder(planned);
  for (const t of ordered) manifestTensors[t.name] = { dtype: t.dtype, shape: t.shape, crc32: '00000000' };

  try {
    await writeSafetensorsStream(file, ordered, {
      metadata: (crcs) => {
        for (const [name, crc] of crcs) manifestTensors[name].crc32 = crcHex(crc);
        const text = JSON.stringify(manifest);
        return {
          format: CHECKPOINT_FORMAT,
          format_version: String(CHECKPOINT_VERSION),
          [MANIFEST_KEY]: text,
          [MANIFEST_CRC_KEY]: crcHex(crc32(Buffer.from(text, 'utf8'))),
        };
      },
      beforeCommit: () => {
        if (stepCounter && stepCounter.count !== stepsAtStart) {
          throw new Error(
            'the optimizer stepped while the checkpoint was being written; await saveCheckpoint() before the next step',
          );
        }
      },
    });
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw e;
    throw new CheckpointError(op, file, `${(e as Error).message}; the previous file (if any) is unchanged`, {
      cause: e,
    });
  }
}

// ---------------------------------------------------------------------------------------
// loadCheckpoint

/**
 * Restores params (in place, by name), optimizer, scheduler and scaler from a checkpoint and
 * returns its `extra`. The whole file and everything asked of it are checked first; if
 * anything is wrong nothing changes and a CheckpointError names the file and the problem.
 */
export async function loadCheckpoint(file: string, options: LoadCheckpointOptions): Promise<unknown> {
  const op = 'loadCheckpoint';
  if (typeof file !== 'string' || file === '') throw new TypeError(`${op}: file must be a non-empty path string`);
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${op}: options must be { params, optimizer?, scheduler?, scaler?, strict? }`);
  checkKeys(options as unknown as Record<string, unknown>, `${op}: options`, [
    'params',
    'optimizer',
    'scheduler',
    'scaler',
    'strict',
  ]);
  const params = checkParams(options.params, op);
  const { optimizer, scheduler, scaler } = options;
  const strict = options.strict ?? true;
  if (typeof strict !== 'boolean') throw new TypeError(`${op}: strict must be a boolean`);
  const flat = optimizer === undefined ? undefined : optimizerParams(optimizer, params, op);
  checkStateful(scheduler, 'scheduler', op);
  checkStateful(scaler, 'scaler', op);
  const fail = (reason: string, cause?: unknown): never => {
    throw new CheckpointError(op, file, reason, cause === undefined ? undefined : { cause });
  };

  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(file);
  } catch (e) {
    if (e instanceof SafetensorsError) fail(e.reason, e);
    throw e;
  }
  let plan: LoadPlan | undefined;
  try {
    plan = await readAndCheck(f, { params, optimizer, flat, scheduler, scaler, strict }, fail);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if (e instanceof SafetensorsError) fail(e.reason, e);
    fail((e as Error).message, e);
  } finally {
    await f.close().catch(() => {});
  }
  if (!plan) throw new Error(`${op}: unreachable`);
  apply(plan, { optimizer, scheduler, scaler }, fail);
  return plan.extra;
}

interface LoadPlan {
  paramValues: Array<[Parameter, Float32Array | Uint16Array]>;
  optimizerDict?: { state: Record<number, Record<string, unknown>>; param_groups: Array<Record<string, unknown>> };
  schedulerDict?: unknown;
  /** For an LRScheduler: its checked dict, ready to commit. */
  schedulerCommit?: () => void;
  scalerDict?: unknown;
  extra: unknown;
}

interface LoadTargets {
  params: Map<string, Parameter>;
  optimizer?: CheckpointOptimizer;
  flat?: Parameter[];
  scheduler?: Stateful;
  scaler?: Stateful;
  strict: boolean;
}

async function readAndCheck(
  f: SafetensorsFile,
  t: LoadTargets,
  fail: (reason: string, cause?: unknown) => never,
): Promise<LoadPlan> {
  const manifest = readManifest(f, fail);

  // Which tensors are needed, and how each is checked (beyond its checksum).
  const needed = new Map<string, (data: TensorData) => unknown>();
  const referenced = new Set<string>();
  const tensorInfo = (name: string, where: string) => {
    const info = manifest.tensors[name];
    if (!info) fail(`${where} refers to tensor ${JSON.stringify(name)}, which the file does not have`);
    if (referenced.has(name)) fail(`tensor ${JSON.stringify(name)} is used twice (${where})`);
    referenced.add(name);
    return info;
  };

  // Params: names, dtypes and shapes.
  const saved = new Map<string, ManifestParam>();
  for (const mp of manifest.params) {
    if (saved.has(mp.name)) fail(`param '${mp.name}' is listed twice`);
    saved.set(mp.name, mp);
    const info = tensorInfo(mp.tensor, `param '${mp.name}'`);
    if (info.dtype !== PARAM_DTYPES[mp.dtype] || !sameShape(info.shape, mp.shape))
      fail(`param '${mp.name}': its tensor does not match its dtype and shape`);
  }
  const toApply: Array<[Parameter, ManifestParam]> = [];
  for (const p of t.params.values()) {
    const mp = saved.get(p.name);
    if (!mp) {
      if (t.strict) fail(`the checkpoint has no param '${p.name}' (pass strict: false to load the params it has)`);
      continue;
    }
    if (mp.dtype !== p.data.dtype) fail(`param '${p.name}' is ${mp.dtype} in the checkpoint but ${p.data.dtype} here`);
    if (!sameShape(mp.shape, p.data.shape))
      fail(
        `param '${p.name}' has shape [${mp.shape.join(', ')}] in the checkpoint but [${p.data.shape.join(', ')}] here`,
      );
    toApply.push([p, mp]);
  }
  if (t.strict) {
    for (const name of saved.keys())
      if (!t.params.has(name))
        fail(`the checkpoint has param '${name}', which is not among params (pass strict: false to ignore it)`);
  }

  // Optimizer: class, groups by name, state tensors of the params' sizes.
  let optimizerState: Array<[number, Json, Parameter]> | undefined;
  let groupDicts: Array<{ [key: string]: Json }> | undefined;
  let optimizerDict: { [key: string]: Json } | undefined;
  if (t.optimizer) {
    const mo = manifest.optimizer;
    if (!mo) fail('the checkpoint has no optimizer state');
    const cls = className(t.optimizer);
    if (mo.class !== cls) fail(`the checkpoint holds the state of a ${mo.class} but the optimizer is a ${cls}`);
    const groups = t.optimizer.paramGroups;
    if (mo.param_groups.length !== groups.length)
      fail(`the checkpoint has ${mo.param_groups.length} param groups but the optimizer has ${groups.length}`);
    const groupOf = new Map<string, number>();
    groups.forEach((g, gi) => g.params.forEach((p) => groupOf.set(p.name, gi)));
    mo.param_groups.forEach((g, gi) => {
      if (g.param_names.length !== groups[gi].params.length) {
        fail(
          `param group ${gi} has ${g.param_names.length} params in the checkpoint but ${groups[gi].params.length} in the optimizer`,
        );
      }
      for (const name of g.param_names) {
        const here = groupOf.get(name);
        if (here === undefined)
          fail(`param group ${gi} of the checkpoint has param '${name}', which the optimizer does not have`);
        if (here !== gi)
          fail(`param '${name}' is in param group ${gi} in the checkpoint but in group ${here} in the optimizer`);
      }
      if (new Set(g.param_names).size !== g.param_names.length)
        fail(`param group ${gi} of the checkpoint lists a param twice`);
    });
    const indexOf = new Map(t.flat!.map((p, i) => [p.name, i]));
    optimizerState = [];
    for (const [name, entry] of Object.entries(mo.state)) {
      const index = indexOf.get(name);
      if (index === undefined)
        fail(`the checkpoint has optimizer state for param '${name}', which the optimizer does not have`);
      const p = t.flat![index];
      const where = `optimizer state of param '${name}'`;
      decodeState(entry, where, (tensor, at) => {
        const info = tensorInfo(tensor, at);
        if (numelOf(info.shape) !== p.data.numel)
          fail(`${at} has ${numelOf(info.shape)} elements but the param has ${p.data.numel}`);
        needed.set(tensor, (data) => toStateArray(info.dtype, data));
        return null;
      });
      optimizerState.push([index, entry, p]);
    }
    optimizerDict = mo.dict;
    markNeeded(mo.dict, 'optimizer state dict');
    groupDicts = mo.param_groups.map((g, gi) => {
      decodeState(g.dict, `optimizer param_groups[${gi}]`, (tensor, at) => {
        tensorInfo(tensor, at);
        needed.set(tensor, (data) => data);
        return null;
      });
      return g.dict;
    });
  } else if (manifest.optimizer) {
    markReferenced(manifest.optimizer.dict, 'optimizer state dict');
    markReferenced(manifest.optimizer.state, 'optimizer state');
    manifest.optimizer.param_groups.forEach((g, gi) => markReferenced(g.dict, `optimizer param_groups[${gi}]`));
  }

  const statefulPart = (
    target: Stateful | undefined,
    part: ManifestStateful | undefined,
    what: 'scheduler' | 'scaler',
  ) => {
    if (!target) {
      if (part) markReferenced(part.state_dict, `${what} state`);
      return;
    }
    if (!part) fail(`the checkpoint has no ${what} state`);
    const cls = className(target);
    if (part.class !== cls)
      fail(`the checkpoint holds the state of a ${part.class} ${what} but the ${what} is a ${cls}`);
    markNeeded(part.state_dict, `${what} state`);
  };
  function markReferenced(json: Json, where: string): void {
    decodeState(json, where, (tensor, at) => (tensorInfo(tensor, at), null));
  }
  function markNeeded(json: Json, where: string): void {
    decodeState(json, where, (tensor, at) => {
      tensorInfo(tensor, at);
      needed.set(tensor, (data) => data);
      return null;
    });
  }
  statefulPart(t.scheduler, manifest.scheduler, 'scheduler');
  statefulPart(t.scaler, manifest.scaler, 'scaler');
  if (manifest.extra !== undefined) markNeeded(manifest.extra, 'extra');

  for (const name of Object.keys(manifest.tensors))
    if (!referenced.has(name)) fail(`tensor ${JSON.stringify(name)} belongs to nothing in the manifest`);

  // Which param values to write: not those an optimizer master will rewrite.
  const mastered = new Set<Parameter>();
  if (optimizerState) {
    for (const [, entry, p] of optimizerState) {
      if (
        entry !== null &&
        typeof entry === 'object' &&
        !Array.isArray(entry) &&
        'master' in entry &&
        p.data.dtype !== 'float32'
      )
        mastered.add(p);
    }
  }
  const paramTensors = new Map<string, Parameter>();
  for (const [p, mp] of toApply) {
    if (mastered.has(p)) continue;
    paramTensors.set(mp.tensor, p);
    needed.set(mp.tensor, (data) => data);
  }

  // Read: every tensor once, in file order, checked against its CRC; keep only what is needed.
  const values = new Map<string, unknown>();
  for (const [name, info] of f.tensors) {
    const expected = manifest.tensors[name].crc32;
    const convert = needed.get(name);
    let crc: number;
    if (convert) {
      const bytes = await f.readBytes(name);
      crc = crc32(bytes);
      if (crcHex(crc) === expected) values.set(name, convert(typedArrayOf(info.dtype, bytes)));
    } else {
      crc = await f.crc32(name);
    }
    if (crcHex(crc) !== expected)
      fail(
        `tensor ${JSON.stringify(name)} fails its checksum (stored crc32 ${expected}, computed ${crcHex(crc)}): the file is corrupt`,
      );
  }

  // Decode.
  const resolve = (tensor: string) => values.get(tensor);
  const plan: LoadPlan = {
    paramValues: [...paramTensors].map(([tensor, p]) => [p, values.get(tensor) as Float32Array | Uint16Array]),
    extra: manifest.extra === undefined ? undefined : decodeState(manifest.extra, 'extra', resolve),
  };
  if (optimizerState && groupDicts && optimizerDict) {
    const state: Record<number, Record<string, unknown>> = {};
    for (const [index, entry] of optimizerState) {
      const s = decodeState(entry, `optimizer state of param '${t.flat![index].name}'`, resolve);
      if (s === null || typeof s !== 'object' || Array.isArray(s))
        fail(`the optimizer state of param '${t.flat![index].name}' is not an object`);
      state[index] = s as Record<string, unknown>;
    }
    const indexOf = new Map(t.flat!.map((p, i) => [p, i]));
    const param_groups = groupDicts.map((dict, gi) => ({
      ...(decodeState(dict, `optimizer param_groups[${gi}]`, resolve) as Record<string, unknown>),
      params: t.optimizer!.paramGroups[gi].params.map((p) => indexOf.get(p)!),
    }));
    const others = decodeState(optimizerDict, 'optimizer state dict', resolve) as Record<string, unknown>;
    plan.optimizerDict = { ...others, state, param_groups };
  }
  if (t.scheduler) {
    plan.schedulerDict = decodeState(manifest.scheduler!.state_dict, 'scheduler state', resolve);
    if (t.scheduler instanceof LRScheduler) {
      try {
        plan.schedulerCommit = t.scheduler[PARSE_STATE_DICT](
          plan.schedulerDict,
          `${className(t.scheduler)}.loadStateDict`,
        );
      } catch (e) {
        fail(`the scheduler's state does not fit the scheduler (${(e as Error).message})`, e);
      }
    }
  }
  if (t.scaler) plan.scalerDict = decodeState(manifest.scaler!.state_dict, 'scaler state', resolve);
  for (const [p] of plan.paramValues) p.data.checkAlive(`param '${p.name}' data`);
  return plan;
}

/** Optimizer state tensors are fp32: other float types are converted, integer ones kept. */
function toStateArray(dtype: SafetensorsDType, data: TensorData): unknown {
  if (dtype === 'F64') return Float32Array.from(data as Float64Array);
  if (dtype === 'BF16') return bf16BitsToFloat32(data as Uint16Array);
  if (dtype === 'F16') return f16BitsToFloat32(data as Uint16Array);
  return data;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// Applies a checked plan. The parts that can still refuse (a duck-typed scaler or scheduler,
// then the optimizer, which checks its whole dict first) go first and are undone if a later
// one refuses; params are written last, after the optimizer (a half param with a saved
// master gets its value from the master there).
function apply(
  plan: LoadPlan,
  t: Pick<LoadTargets, 'optimizer' | 'scheduler' | 'scaler'>,
  fail: (reason: string, cause?: unknown) => never,
): void {
  const undo: Array<() => void> = [];
  const rollback = () => {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch {
        // best effort: the original error is what matters
      }
    }
  };
  const step = (what: string, run: () => void, snapshot?: () => () => void) => {
    const restore = snapshot?.();
    try {
      run();
    } catch (e) {
      if (restore) undo.push(restore);
      rollback();
      fail(`the ${what} rejected its state (${(e as Error).message}); nothing was changed`, e);
    }
    if (restore) undo.push(restore);
  };
  const snapshotOf = (s: Stateful) => () => {
    const before = s.stateDict();
    return () => s.loadStateDict(before as never);
  };
  if (t.scaler) step('scaler', () => t.scaler!.loadStateDict(plan.scalerDict as never), snapshotOf(t.scaler));
  if (t.scheduler && !plan.schedulerCommit)
    step('scheduler', () => t.scheduler!.loadStateDict(plan.schedulerDict as never), snapshotOf(t.scheduler));
  if (t.optimizer && plan.optimizerDict)
    step('optimizer', () => t.optimizer!.loadStateDict(plan.optimizerDict as never));
  for (const [p, values] of plan.paramValues) {
    try {
      p.data.copyFrom(values);
    } catch (e) {
      fail(
        `writing param '${p.name}' failed (${(e as Error).message}) after the optimizer state was loaded: the checkpoint is only partly applied`,
        e,
      );
    }
  }
  plan.schedulerCommit?.();
}

// ---------------------------------------------------------------------------------------
// Reading and checking the manifest

function readManifest(f: SafetensorsFile, fail: (reason: string) => never): Manifest {
  const meta = f.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    fail(
      meta.format === undefined
        ? 'not a fused-optim checkpoint (a safetensors file without the "format" metadata)'
        : `not a fused-optim checkpoint (format ${JSON.stringify(meta.format)})`,
    );
  }
  const version = Number(meta.format_version);
  if (!Number.isSafeInteger(version) || version < 1 || String(version) !== meta.format_version)
    fail(`bad format_version ${JSON.stringify(meta.format_version)}`);
  if (version > CHECKPOINT_VERSION)
    fail(
      `written in checkpoint format version ${version}, by a newer fused-optim; this version reads version ${CHECKPOINT_VERSION}`,
    );
  const text = meta[MANIFEST_KEY];
  if (typeof text !== 'string') fail(`the metadata has no ${MANIFEST_KEY}`);
  const crc = crcHex(crc32(Buffer.from(text, 'utf8')));
  if (meta[MANIFEST_CRC_KEY] !== crc)
    fail(
      `the manifest fails its checksum (stored crc32 ${JSON.stringify(meta[MANIFEST_CRC_KEY])}, computed ${crc}): the file is corrupt`,
    );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`the manifest is not valid JSON (${(e as Error).message})`);
  }
  const m = checkManifest(json, fail);
  if (m.format !== CHECKPOINT_FORMAT || m.version !== version) fail('the manifest disagrees with the format metadata');
  // The header's tensor table and the manifest's must agree.
  const names = Object.keys(m.tensors);
  if (names.length !== f.tensors.size)
    fail(`the header has ${f.tensors.size} tensors but the manifest lists ${names.length}`);
  for (const name of names) {
    const info = f.tensors.get(name);
    if (!info) fail(`the manifest lists tensor ${JSON.stringify(name)}, which the header does not have`);
    const mt = m.tensors[name];
    if (info.dtype !== mt.dtype || !sameShape(info.shape, mt.shape)) {
      fail(
        `tensor ${JSON.stringify(name)} is ${info.dtype} [${info.shape.join(', ')}] in the header but ${mt.dtype} [${mt.shape.join(', ')}] in the manifest`,
      );
    }
  }
  return m;
}

function checkManifest(json: unknown, fail: (reason: string) => never): Manifest {
  const bad = (where: string, what: string): never => fail(`manifest: ${where} must be ${what}`);
  const obj = (v: unknown, where: string) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : bad(where, 'an object');
  const arr = (v: unknown, where: string) => (Array.isArray(v) ? v : bad(where, 'an array'));
  const str = (v: unknown, where: string) => (typeof v === 'string' ? v : bad(where, 'a string'));
  const shape = (v: unknown, where: string) =>
    arr(v, where).map((d, i) =>
      Number.isSafeInteger(d) && (d as number) >= 0 ? (d as number) : bad(`${where}[${i}]`, 'a non-negative integer'),
    );
  const m = obj(json, 'the manifest');
  const tensors: Manifest['tensors'] = {};
  for (const [name, v] of Object.entries(obj(m.tensors, 'tensors'))) {
    const t = obj(v, `tensors[${JSON.stringify(name)}]`);
    const crc = str(t.crc32, `tensors[${JSON.stringify(name)}].crc32`);
    if (!/^[0-9a-f]{8}$/.test(crc)) bad(`tensors[${JSON.stringify(name)}].crc32`, '8 hex digits');
    tensors[name] = {
      dtype: str(t.dtype, `tensors[${JSON.stringify(name)}].dtype`) as SafetensorsDType,
      shape: shape(t.shape, `tensors[${JSON.stringify(name)}].shape`),
      crc32: crc,
    };
  }
  const params = arr(m.params, 'params').map((v, i) => {
    const p = obj(v, `params[${i}]`);
    const dtype = str(p.dtype, `params[${i}].dtype`);
    if (!Object.hasOwn(PARAM_DTYPES, dtype)) bad(`params[${i}].dtype`, 'float32, float16 or bfloat16');
    return {
      name: str(p.name, `params[${i}].name`),
      dtype: dtype as DType,
      shape: shape(p.shape, `params[${i}].shape`),
      tensor: str(p.tensor, `params[${i}].tensor`),
    };
  });
  const out: Manifest = { format: str(m.format, 'format'), version: m.version as number, tensors, params };
  if (m.optimizer !== undefined) {
    const o = obj(m.optimizer, 'optimizer');
    const param_groups = arr(o.param_groups, 'optimizer.param_groups').map((v, gi) => {
      const g = obj(v, `optimizer.param_groups[${gi}]`);
      const names = arr(g.param_names, `optimizer.param_groups[${gi}].param_names`).map((n, i) =>
        str(n, `optimizer.param_groups[${gi}].param_names[${i}]`),
      );
      const ids = arr(g.params, `optimizer.param_groups[${gi}].params`).map((n, i) =>
        Number.isSafeInteger(n) && (n as number) >= 0
          ? (n as number)
          : bad(`optimizer.param_groups[${gi}].params[${i}]`, 'a non-negative integer'),
      );
      if (ids.length !== names.length) bad(`optimizer.param_groups[${gi}].params`, 'as long as param_names');
      return {
        dict: obj(g.dict, `optimizer.param_groups[${gi}].dict`) as { [key: string]: Json },
        params: ids,
        param_names: names,
      };
    });
    const dict = obj(o.dict, 'optimizer.dict') as { [key: string]: Json };
    if ('state' in dict || 'param_groups' in dict) bad('optimizer.dict', 'free of state and param_groups');
    out.optimizer = {
      class: str(o.class, 'optimizer.class'),
      dict,
      param_groups,
      state: obj(o.state, 'optimizer.state') as { [name: string]: Json },
    };
  }
  for (const key of ['scheduler', 'scaler'] as const) {
    if (m[key] === undefined) continue;
    const s = obj(m[key], key);
    if (!('state_dict' in s)) bad(`${key}.state_dict`, 'present');
    out[key] = { class: str(s.class, `${key}.class`), state_dict: s.state_dict as Json };
  }
  if ('extra' in m) out.extra = m.extra as Json;
  return out;
}
