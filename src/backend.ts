// Which backend runs: CUDA when a usable GPU is present, else the CPU. FUSED_OPTIM_DEVICE
// (cpu | cuda) overrides the choice; asking for cuda without a usable GPU is an error.
import type { DeviceName } from './dtype';
import { native } from './native';

export interface BackendInfo {
  backend: DeviceName;
  /** The GPU's name, or a description of the CPU pool. */
  device: string;
  /** The binary contains the CUDA backend. */
  cudaCompiled: boolean;
  /**
   * The CUDA backend in use is the CUDA host emulator, which runs the CUDA sources on the
   * CPU for testing (a build made with FUSED_OPTIM_CUDA=EMULATE; never a published one).
   */
  emulated: boolean;
  /** Why CUDA is not used, when it is not. */
  cudaError?: string;
  /** Threads of the CPU backend's pool. */
  threads: number;
  /** GPU compute capability, e.g. "9.0", when a GPU is usable. */
  computeCapability?: string;
  /** GPU architectures compiled into the binary. */
  cudaArchs?: string;
  cudaRuntimeVersion?: number;
  cudaDriverVersion?: number;
}

export function backendInfo(): BackendInfo {
  const n = native().nativeInfo();
  const requested = process.env.FUSED_OPTIM_DEVICE;
  if (requested !== undefined && requested !== '' && requested !== 'cpu' && requested !== 'cuda') {
    throw new TypeError(`FUSED_OPTIM_DEVICE must be 'cpu' or 'cuda', got ${JSON.stringify(requested)}`);
  }
  if (requested === 'cuda' && !n.cudaUsable) {
    throw new Error(`FUSED_OPTIM_DEVICE=cuda but CUDA is not usable: ${n.cudaError}`);
  }
  const useCuda = n.cudaUsable && requested !== 'cpu';
  const info: BackendInfo = {
    backend: useCuda ? 'cuda' : 'cpu',
    device: useCuda ? n.cudaDeviceName : `cpu (${n.threads} threads)`,
    cudaCompiled: n.cudaCompiled,
    emulated: useCuda && n.cudaEmulated,
    threads: n.threads,
  };
  if (n.cudaCompiled) {
    info.cudaArchs = n.cudaArchs;
    info.cudaRuntimeVersion = n.cudaRuntimeVersion;
    info.cudaDriverVersion = n.cudaDriverVersion;
  }
  if (n.cudaUsable) info.computeCapability = n.cudaComputeCapability;
  if (!useCuda) info.cudaError = n.cudaUsable ? 'disabled by FUSED_OPTIM_DEVICE=cpu' : n.cudaError;
  return info;
}

/** The device new tensors go to when none is named. */
export function defaultDevice(): DeviceName {
  return backendInfo().backend;
}

/** Throws a clear error when `device` cannot be used in this process. */
export function checkDeviceUsable(device: DeviceName): void {
  if (device === 'cpu') return;
  const n = native().nativeInfo();
  if (!n.cudaUsable) throw new Error(`device 'cuda' is not usable: ${n.cudaError}`);
}
