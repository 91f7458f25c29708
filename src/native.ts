// Loads the compiled addon (prebuilt binary or local build) and describes its surface.
// Everything native goes through this module; nothing else calls the addon directly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import { checkNativeLayouts, type NativeLayouts } from './layouts';

export interface NativeTensorHandle {
  /** Into `out` (numel elements) when given. */
  toFloat32(out?: Float32Array): Float32Array;
  toBits16(out?: Uint16Array): Uint16Array;
  copyFromFloat32(values: Float32Array): void;
  copyFromBits16(bits: Uint16Array): void;
  zero(): void;
  dispose(): void;
  readonly disposed: boolean;
  readonly devicePointer: bigint;
}

/** An opaque list of tensors in native memory (an optimizer's state buffers, a snapshot). */
export type NativeTensorTable = { readonly __brand: 'NativeTensorTable' };

/**
 * A param's state as the addon moves it (native/addon/state_js.h): step count plus named
 * buffers in the state's dtype: Float32Array (float32; stateDtype absent), Uint16Array
 * (bfloat16 bits), or Uint8Array codes with a Float32Array `<buffer>_absmax` (uint8).
 */
export interface NativeParamState {
  step: number;
  stateDtype?: 'float32' | 'bfloat16' | 'uint8';
  blockSize?: number;
  master?: Float32Array;
  [buffer: string]: Float32Array | Uint16Array | Uint8Array | number | string | undefined;
}

/** How a group's params are registered (one addParams call per group). */
export interface NativeParamOptions {
  masterWeights: boolean;
  /** Per param: scales its step, not its decoupled decay (AdamWDL's layer-wise ratio); default 1. */
  lrRatios?: Float64Array;
  /** Per param: 1 for decoupled weight decay, 0 for none; default all 1. */
  applyDecay?: Uint8Array;
}

/** What a step does to the grads first; see native/addon/optimizer_wrap.h. */
export interface NativeStepControl {
  invScale?: number;
  checkFinite?: boolean;
  /** 0 none, 1 global norm, 2 per-tensor norm. */
  clip?: number;
  maxNorm?: number;
  clipMin?: number;
  clipMax?: number;
  stochasticRounding?: boolean;
}

/** AdamWHandle and LionHandle: one native optimizer engine. */
export interface NativeOptimizerHandle {
  /** Registers a group's params, all or none; returns the index of the first. */
  addParams(
    data: NativeTensorHandle[],
    group: number,
    names: string[],
    masterWeights: boolean,
    lrRatios?: Float64Array,
    applyDecay?: Uint8Array,
    /** STATE_DTYPES code (default 0, float32) and 8-bit block size (default 256). */
    stateDtype?: number,
    blockSize?: number,
  ): number;
  setGrad(index: number, grad: NativeTensorHandle | null): void;
  /** The grads of params first, first + 1, ... */
  setGrads(first: number, grads: Array<NativeTensorHandle | null>): void;
  setSparseGrad(index: number, values: NativeTensorHandle, rows: Int32Array, rowWidth: number): void;
  setLazyMode(on: boolean): void;
  /** Returns true when the step was skipped (an inf/NaN grad under checkFinite). */
  step(hyper: Float64Array, control?: NativeStepControl): boolean;
  stepAsync(hyper: Float64Array, control?: NativeStepControl): Promise<boolean>;
  getRng(): { seed: number; counter: number };
  setRng(seed: number, counter: number): void;
  synchronize(): void;
  /** 7 numbers per param with grad and state: index and the six metric sums. */
  metrics(hyper: Float64Array): Float64Array;
  /** In the state's own dtype, or every buffer decoded to fp32 (asFloat32). */
  getState(index: number, asFloat32?: boolean): NativeParamState | null;
  /** Any dtype; converted to the param's. */
  setState(index: number, state: NativeParamState): void;
  /** The param's state dtype changed (its group's): existing state is converted. */
  setStateDtype(index: number, stateDtype: number, blockSize: number): void;
  /** Bytes of the state buffers held (in their dtypes). */
  readonly stateBytes: number;
  /** Times the launch plan was rebuilt (a new lr must not cause one). */
  readonly planUploads: number;
  // Checkpoints (native/addon/optimizer_checkpoint.h): steps and state changes are refused
  // between checkpointBegin() and checkpointEnd(). Masks: bit k for buffer k
  // (checkpointBufferNames()[k]), 0x80 for the master; tables list each param's buffers so.
  checkpointBegin(): void;
  checkpointEnd(): void;
  checkpointBufferNames(): string[];
  /** Per param: step (-1: none), buffer mask, state dtype code, 8-bit block size; the buffers (8-bit: codes, absmax). */
  checkpointStates(): {
    steps: Float64Array;
    masks: Uint8Array;
    stateDtypes: Uint8Array;
    blockSizes: Int32Array;
    table: NativeTensorTable;
  };
  /** Buffers to read into, in the file's state dtypes (default: each param's own). */
  checkpointStage(
    indices: Int32Array,
    masks: Uint8Array,
    stateDtypes?: Uint8Array,
    blockSizes?: Int32Array,
  ): { table: NativeTensorTable; fresh: Uint8Array };
  /** flags: 1 master loaded, 2 param loaded. */
  checkpointCommit(indices: Int32Array, steps: Float64Array, flags: Uint8Array): void;
  checkpointAbort(indices: Int32Array): void;
  checkpointReset(indices: Int32Array): void;
  /** Why the optimizer refuses to continue (a step failed part way on the GPU), or null. */
  readonly brokenReason: string | null;
  /** Later steps wait (on the device) for this cudaEvent_t. */
  waitFor(event: bigint): void;
  /** The cudaStream_t the steps run on, or null on the CPU. */
  readonly cudaStream: bigint | null;
  /** Frees the state now (after a running stepAsync); later calls throw. Idempotent. */
  dispose(): void;
  readonly disposed: boolean;
  /** Bytes of state, masters and tables last reported to V8 with AdjustExternalMemory. */
  readonly memoryBytes: number;
}

export interface NativeInfo {
  cudaCompiled: boolean;
  cudaUsable: boolean;
  cudaError: string;
  cudaDeviceName: string;
  cudaDeviceCount: number;
  cudaComputeCapability: string;
  cudaRuntimeVersion: number;
  cudaDriverVersion: number;
  cudaArchs: string;
  /** The CUDA backend is the host emulator (a test build: FUSED_OPTIM_CUDA=EMULATE). */
  cudaEmulated: boolean;
  threads: number;
}

/** Present in builds against the CUDA host emulator only (tools/cuda-emu). */
export interface NativeCudaEmulator {
  counters(): {
    launches: number;
    blocks: number;
    hostSyncs: number;
    copies: number;
    memsets: number;
    mallocs: number;
    frees: number;
    liveAllocations: number;
    liveBytes: number;
    pendingOps: number;
  };
  /** The `times` (default 1) calls of `kind` after `skip` successful ones fail (skip < 0 cancels). */
  failAfter(kind: 'malloc' | 'launch' | 'sync' | 'memcpy', skip: number, times?: number): void;
  /** A new event recorded on the legacy default stream (for tests of ordering); free with destroyEvent. */
  recordEvent(): bigint;
  destroyEvent(event: bigint): void;
  /** e.g. "threads=fiber exec=deferred thread-order=forward block-order=forward seed=1 protect=pkey" */
  readonly config: string;
}

export interface NativeModule {
  TensorHandle: {
    create(dtype: number, device: number, numel: number): NativeTensorHandle;
    fromDevicePointer(ptr: bigint, dtype: number, numel: number): NativeTensorHandle;
  };
  AdamWHandle: new (device: number) => NativeOptimizerHandle;
  LionHandle: new (device: number) => NativeOptimizerHandle;
  /** The boundary layouts (native/addon/layouts.h), checked at load (src/layouts.ts). */
  layouts: NativeLayouts;
  nativeInfo(): NativeInfo;
  gradNormSums(grads: NativeTensorHandle[], normType: number): Float64Array;
  scaleGrads(grads: NativeTensorHandle[], coef: number): void;
  clampGrads(grads: NativeTensorHandle[], min: number, max: number): void;
  // Checkpoint transfers (src/checkpoint/native_io.ts). Item i is table[tableIndex[i]] where
  // tableIndex[i] >= 0, else sources[i] / destinations[i].
  checkpointWrite(
    fd: number,
    sources: Array<NativeTensorHandle | ArrayBufferView | undefined>,
    offsets: Float64Array,
    stagingBytes: number,
    release: boolean,
    table?: NativeTensorTable,
    tableIndex?: Int32Array,
  ): Promise<Uint32Array>;
  checkpointRead(
    fd: number,
    destinations: Array<NativeTensorHandle | null | undefined>,
    offsets: Float64Array,
    fileBytes: Float64Array,
    converts: Uint8Array,
    stagingBytes: number,
    table?: NativeTensorTable,
    tableIndex?: Int32Array,
  ): Promise<Uint32Array>;
  checkpointSnapshot(
    sources: Array<NativeTensorHandle | undefined>,
    table?: NativeTensorTable,
    tableIndex?: Int32Array,
  ): Promise<NativeTensorTable>;
  checkpointPin(tensors: NativeTensorHandle[], table?: NativeTensorTable): NativeTensorTable;
  checkpointUnpin(table: NativeTensorTable): void;
  crc32(data: ArrayBufferView, crc?: number): number;
  crc32Method(): string;
  /** native/checkpoint/header_parser.h: the tensors of a header, or null to leave it to TypeScript. */
  parseSafetensorsHeader(
    header: Uint8Array,
    fileSize: number,
  ): Promise<import('./checkpoint/header_table').NativeHeaderColumns | null>;
  safetensorsDTypes(): string[];
  cudaEmulator?: NativeCudaEmulator;
}

// The package root holds build/ and prebuilds/; this file runs from src/ (tests) or
// dist/cjs/ (the published package), so look upwards for our package.json.
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'fused-optim') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`fused-optim: cannot find the package root above ${__dirname}`);
    dir = parent;
  }
}

let loaded: NativeModule | undefined;

// The addon reads FUSED_OPTIM_THREADS once, when its pool starts; a bad value is an error
// here rather than a silent fallback there.
function checkThreadsVariable(): void {
  const v = process.env.FUSED_OPTIM_THREADS;
  if (v === undefined || v === '') return;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) {
    throw new RangeError(`FUSED_OPTIM_THREADS must be an integer from 1 to 1024, got ${JSON.stringify(v)}`);
  }
}

/** A new native optimizer engine of the handle class `name` (an OptimizerLayout's handle). */
export function optimizerHandle(name: string, device: number): NativeOptimizerHandle {
  const handleClass = (native() as unknown as Record<string, unknown>)[name];
  if (typeof handleClass !== 'function') throw new Error(`fused-optim: the addon has no optimizer handle ${name}`);
  return new (handleClass as new (device: number) => NativeOptimizerHandle)(device);
}

export function native(): NativeModule {
  if (!loaded) {
    checkThreadsVariable();
    let addon: NativeModule;
    try {
      addon = nodeGypBuild(packageRoot()) as NativeModule;
    } catch (e) {
      throw new Error(
        `fused-optim: the native addon could not be loaded (${(e as Error).message}). ` +
          'Run `npm run build` in a source checkout, or reinstall the package.',
      );
    }
    checkNativeLayouts(addon.layouts);
    loaded = addon;
  }
  return loaded;
}
