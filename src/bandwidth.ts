// copyBandwidth(): the machine's copy bandwidth, the yardstick of the performance model
// (docs/design.md section 6). An optimizer step can go no faster than its bytes per parameter
// over this figure; the benchmark suite (bench/run.mjs) reports each case as a fraction of it.
import { checkDeviceUsable, defaultDevice } from './backend';
import { type DeviceName, deviceCode } from './dtype';
import { checkInteger, checkOptions } from './checks';
import { native } from './native';

export interface CopyBandwidthOptions {
  /** Bytes of each of the two buffers (default 512 MiB; from 4096 to 2^40). */
  bytes?: number;
  /** Timed copies per method, after one untimed warm-up copy (default 10; 1 to 10000). */
  iterations?: number;
  /** 'cpu' or 'cuda' (default: the default device, as for new tensors). */
  device?: DeviceName;
}

export interface CopyBandwidthMethod {
  /** 'stream' (non-temporal stores), 'memcpy' (glibc) or 'cudaMemcpy' (device to device). */
  name: string;
  bestGBps: number;
  medianGBps: number;
}

export interface CopyBandwidthResult {
  device: DeviceName;
  /**
   * The fastest copy, in GB/s (1e9 bytes per second), counting every byte read and every
   * byte written: a copy of `bytes` moves 2 * `bytes`, the convention of the optimizers'
   * bytes per parameter.
   */
  gbps: number;
  /** The same method's median copy, in GB/s. */
  medianGbps: number;
  /** The method that gave `gbps`. */
  method: string;
  /** Every method measured (CPU: 'stream' and 'memcpy'; CUDA: 'cudaMemcpy'). */
  methods: CopyBandwidthMethod[];
  /** Seconds of the fastest and of the median copy. */
  bestSeconds: number;
  medianSeconds: number;
  bytes: number;
  iterations: number;
  /** CPU: threads of the pool that copied (FUSED_OPTIM_THREADS); CUDA: 0. */
  threads: number;
  /** CPU: bytes per work item handed to the pool; CUDA: 0. */
  chunkBytes: number;
}

interface NativeBandwidth {
  method: string;
  methods: CopyBandwidthMethod[];
  bestGBps: number;
  medianGBps: number;
  bestSeconds: number;
  medianSeconds: number;
  bytes: number;
  iterations: number;
  threads: number;
  chunkBytes: number;
}

const MIN_BYTES = 4096;
const MAX_BYTES = 2 ** 40;
const MAX_ITERATIONS = 10_000;

/**
 * Measures the copy bandwidth of the CPU (a copy of a large buffer spread over the addon's
 * thread pool, two ways: glibc's memcpy and non-temporal streaming stores; the faster
 * counts) or of the GPU (cudaMemcpy device to device, timed with CUDA events). Synchronous:
 * it blocks for about (iterations + 1) copies per method. Needs 2 x `bytes` of memory.
 */
export function copyBandwidth(options: CopyBandwidthOptions = {}): CopyBandwidthResult {
  const o = checkOptions(options, 'copyBandwidth: options', ['bytes', 'iterations', 'device']) as CopyBandwidthOptions;
  const bytes = checkInteger(o.bytes ?? 512 * 2 ** 20, 'copyBandwidth: bytes', { min: MIN_BYTES, max: MAX_BYTES });
  const iterations = checkInteger(o.iterations ?? 10, 'copyBandwidth: iterations', { min: 1, max: MAX_ITERATIONS });
  const device = o.device ?? defaultDevice();
  const code = deviceCode(device, 'copyBandwidth: device');
  checkDeviceUsable(device);
  const addon = native() as ReturnType<typeof native> & {
    copyBandwidth?: (bytes: number, iterations: number, device: number) => NativeBandwidth;
  };
  if (typeof addon.copyBandwidth !== 'function') {
    throw new Error(
      'copyBandwidth: the loaded native addon predates copyBandwidth; rebuild it (npm run build:gyp or npm run build)',
    );
  }
  const r = addon.copyBandwidth(bytes, iterations, code);
  return {
    device,
    gbps: r.bestGBps,
    medianGbps: r.medianGBps,
    method: r.method,
    methods: r.methods.map((m) => ({ name: m.name, bestGBps: m.bestGBps, medianGBps: m.medianGBps })),
    bestSeconds: r.bestSeconds,
    medianSeconds: r.medianSeconds,
    bytes: r.bytes,
    iterations: r.iterations,
    threads: r.threads,
    chunkBytes: r.chunkBytes,
  };
}
