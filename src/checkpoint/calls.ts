// The arguments of saveCheckpoint and loadCheckpoint: checked before any file is touched; a
// bad call is a TypeError or RangeError naming the argument and the problem.
import { checkKeys, checkObject as checkPlainObject, describe } from '../checks';
import { FusedOptimizer } from '../fused_optimizer';
import { Parameter } from '../parameter';
import { DEFAULT_STAGING_BYTES, MAX_STAGING_BYTES, MIN_STAGING_BYTES } from './native_io';

/** Anything with torch-style state dicts: schedulers, loss scalers. */
export interface Stateful {
  stateDict(): unknown;
  loadStateDict(stateDict: never): void;
}

/** An optimizer: its param groups (for the names of its params) and state dicts in torch's layout. */
export interface CheckpointOptimizer extends Stateful {
  readonly paramGroups: ReadonlyArray<{ readonly params: readonly Parameter[] }>;
}

/** What saveCheckpoint saves. */
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

/** What loadCheckpoint restores. */
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

/** How a checkpoint is written or read. */
export interface CheckpointIOOptions {
  /**
   * The most memory a save or load allocates to stage tensor bytes (default 64 MiB, at least
   * 1 MiB). Tensors in host memory are written from and read into their own memory; small
   * ones and CUDA ones pass through two staging buffers of half this size each.
   */
  stagingBytes?: number;
}

export interface SaveOptions extends CheckpointIOOptions {
  /**
   * Return as soon as a consistent copy of everything is taken (host memory of the size of
   * the tensors saved), and write it while training goes on; `written` settles when the file
   * is in place.
   */
  background?: boolean;
}

/** What a background save resolves with. */
export interface BackgroundSave {
  /** Resolves when the file is in place; rejects with a CheckpointError if the write failed. */
  written: Promise<void>;
}

export interface Targets {
  file: string;
  params: Map<string, Parameter>;
  optimizer?: CheckpointOptimizer;
  /** The optimizer's params in torch's index order. */
  flat?: Parameter[];
  scheduler?: Stateful;
  scaler?: Stateful;
  stagingBytes: number;
}

export interface SaveCall extends Targets {
  extra: unknown;
  background: boolean;
}

export interface LoadCall extends Targets {
  strict: boolean;
}

export function checkSaveCall(file: unknown, state: unknown, options: unknown): SaveCall {
  const op = 'saveCheckpoint';
  const s = checkObject(state, op, 'state', ['params', 'optimizer', 'scheduler', 'scaler', 'extra']);
  const o = checkObject(options ?? {}, op, 'options', ['background', 'stagingBytes']);
  const background = o.background ?? false;
  if (typeof background !== 'boolean') throw new TypeError(`${op}: options.background must be a boolean`);
  return { ...checkTargets(file, s, o, op), extra: s.extra, background };
}

export function checkLoadCall(file: unknown, targets: unknown, options: unknown): LoadCall {
  const op = 'loadCheckpoint';
  const t = checkObject(targets, op, 'targets', ['params', 'optimizer', 'scheduler', 'scaler', 'strict']);
  const o = checkObject(options ?? {}, op, 'options', ['stagingBytes']);
  const strict = t.strict ?? true;
  if (typeof strict !== 'boolean') throw new TypeError(`${op}: strict must be a boolean`);
  return { ...checkTargets(file, t, o, op), strict };
}

function checkTargets(file: unknown, t: Record<string, unknown>, o: Record<string, unknown>, op: string): Targets {
  if (typeof file !== 'string' || file === '') throw new TypeError(`${op}: file must be a non-empty path string`);
  const params = checkParams(t.params, op);
  const optimizer = t.optimizer as CheckpointOptimizer | undefined;
  const flat = optimizer === undefined ? undefined : optimizerParams(optimizer, params, op);
  checkStateful(t.scheduler, 'scheduler', op);
  checkStateful(t.scaler, 'scaler', op);
  return {
    file,
    params,
    optimizer,
    flat,
    scheduler: t.scheduler as Stateful | undefined,
    scaler: t.scaler as Stateful | undefined,
    stagingBytes: checkStagingBytes(o.stagingBytes, op),
  };
}

// The shared vocabulary (src/checks.ts): a non-object is a TypeError, and so is an unknown key,
// naming the key probably meant.
function checkObject(v: unknown, op: string, what: string, keys: readonly string[]): Record<string, unknown> {
  const o = checkPlainObject(v, `${op}: ${what}`, `an object { ${keys.join(', ')} }`);
  checkKeys(o, `${op}: ${what}`, keys);
  return o;
}

export { describe };

function checkStagingBytes(v: unknown, op: string): number {
  if (v === undefined) return DEFAULT_STAGING_BYTES;
  if (!Number.isSafeInteger(v) || (v as number) < MIN_STAGING_BYTES || (v as number) > MAX_STAGING_BYTES)
    throw new RangeError(
      `${op}: options.stagingBytes must be an integer from ${MIN_STAGING_BYTES} (1 MiB) to ${MAX_STAGING_BYTES}, got ${describe(v)}`,
    );
  return v as number;
}

export function className(o: object): string {
  return (o.constructor as { name?: string } | undefined)?.name || 'Object';
}

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

/** The fused optimizer behind `o`, when its state can stream without host copies. */
export function fusedOptimizer(o: CheckpointOptimizer | undefined): FusedOptimizer<never, never, never> | undefined {
  return o instanceof FusedOptimizer ? (o as unknown as FusedOptimizer<never, never, never>) : undefined;
}

/** Whether `method` of a fused optimizer is the library's own (not overridden by a subclass). */
export function ownsMethod(o: FusedOptimizer<never, never, never>, method: 'stateDict' | 'loadStateDict'): boolean {
  return o[method] === FusedOptimizer.prototype[method];
}
