// The MPI backend: the optional native module native/mpi (build/Release/mpi/fused_optim_mpi.node),
// built at install time where an MPI compiler wrapper is found (scripts/find-mpi.js). The main
// addon never loads it, so fused-optim works without MPI; init() explains what is missing.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { packageRoot } from '../native';
import { type BackendInfo, type CollectiveBackend, type CollectiveCall, CollectiveKind, REDUCE_OPS } from './backend';

interface NativeMpi {
  init(timeoutSeconds: number): {
    rank: number;
    worldSize: number;
    threadLevel: number;
    library: string;
    mpiVersion: string;
    hostname: string;
  };
  setTimeout(seconds: number): void;
  collective(
    kind: CollectiveKind,
    input: unknown,
    output: unknown,
    op: number,
    root: number,
    ordered: boolean,
    label: string,
  ): void;
  collectiveAsync(
    kind: CollectiveKind,
    input: unknown,
    output: unknown,
    op: number,
    root: number,
    ordered: boolean,
    label: string,
  ): Promise<void>;
  allocate(bytes: number): ArrayBuffer;
  finalize(): void;
  abort(code: number, message: string): void;
  status(): {
    initialized: boolean;
    finalized: boolean;
    broken: string;
    pending: number;
    completed: number;
    timeoutSeconds: number;
  };
}

export const MPI_MODULE_RELATIVE_PATH = path.join('native', 'mpi', 'build', 'Release', 'fused_optim_mpi.node');

const INSTALL_HINT =
  'It is built when an MPI compiler wrapper (mpicc) is on PATH while fused-optim is installed or built: install MPI ' +
  'with its development files (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev; or MPICH), then run ' +
  '`npm rebuild fused-optim` (in a source checkout: `npm run build:mpi`).';

/** The module's file: FUSED_OPTIM_MPI_MODULE when set, else the package's build. */
export function mpiModulePath(): string {
  const override = process.env.FUSED_OPTIM_MPI_MODULE;
  if (override !== undefined && override !== '') return path.resolve(override);
  return path.join(packageRoot(), MPI_MODULE_RELATIVE_PATH);
}

function loadNative(): NativeMpi {
  const file = mpiModulePath();
  if (!fs.existsSync(file)) {
    throw new Error(`fused-optim/distributed: the MPI module is not built (${file} does not exist). ${INSTALL_HINT}`);
  }
  try {
    return createRequire(__filename)(file) as NativeMpi;
  } catch (e) {
    throw new Error(
      `fused-optim/distributed: the MPI module ${file} could not be loaded (${(e as Error).message}). ` +
        'Is the MPI library it was built against installed (e.g. libmpi.so.40 of Open MPI)? ' +
        INSTALL_HINT,
      { cause: e },
    );
  }
}

export class MpiBackend implements CollectiveBackend {
  readonly info: BackendInfo & { mpiVersion: string; threadLevel: number };
  readonly devices = ['cpu'] as const;
  readonly #native: NativeMpi;

  private constructor(native: NativeMpi, info: MpiBackend['info']) {
    this.#native = native;
    this.info = info;
  }

  /** Loads the module and initialises MPI (once per process; later calls share it). */
  static start(timeoutSeconds: number): MpiBackend {
    const native = loadNative();
    let i: ReturnType<NativeMpi['init']>;
    try {
      i = native.init(timeoutSeconds);
    } catch (e) {
      throw new Error(`fused-optim/distributed: MPI could not be initialised: ${(e as Error).message}`, { cause: e });
    }
    return new MpiBackend(native, {
      name: 'mpi',
      rank: i.rank,
      worldSize: i.worldSize,
      library: i.library,
      hostname: i.hostname,
      mpiVersion: i.mpiVersion,
      threadLevel: i.threadLevel,
    });
  }

  run(call: CollectiveCall): void {
    this.#native.collective(
      call.kind,
      call.input,
      call.output,
      REDUCE_OPS.indexOf(call.op),
      call.root,
      call.ordered,
      call.label,
    );
  }

  runAsync(call: CollectiveCall): Promise<void> {
    try {
      return this.#native.collectiveAsync(
        call.kind,
        call.input,
        call.output,
        REDUCE_OPS.indexOf(call.op),
        call.root,
        call.ordered,
        call.label,
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  allocateHost(bytes: number): ArrayBuffer {
    return this.#native.allocate(bytes);
  }

  get timeoutSeconds(): number {
    return this.#native.status().timeoutSeconds;
  }

  set timeoutSeconds(seconds: number) {
    this.#native.setTimeout(seconds);
  }

  get pending(): number {
    return this.#native.status().pending;
  }

  destroy(): void {
    this.#native.finalize();
  }

  get destroyed(): boolean {
    return this.#native.status().finalized;
  }

  abort(code: number, message: string): void {
    this.#native.abort(code, message);
  }
}
