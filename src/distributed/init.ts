// init(): the process group of this job. One per process (MPI is per process): a second
// init() returns the same group. A process that ends without destroy() finalizes MPI on a
// clean exit and aborts the whole job on an error exit (an uncaught exception, a non-zero
// exit code), so the other ranks stop at once instead of waiting for it.
import { inspect } from 'node:util';
import type { CollectiveBackend } from './backend';
import { describeValue } from './host_arrays';
import { MpiBackend } from './mpi_backend';
import { ProcessGroup } from './process_group';

export interface InitOptions {
  /** Only 'mpi' today (the default). */
  backend?: 'mpi';
  /**
   * Seconds a collective may wait for the other ranks before the job is aborted with a
   * message naming the collective (default 300). A rank that dies is noticed by the
   * launcher at once; the timeout catches ranks that hang or skip a collective.
   */
  timeoutSeconds?: number;
}

let current: ProcessGroup | undefined;

function checkInitOptions(options: unknown): Required<InitOptions> {
  if (options === null || typeof options !== 'object')
    throw new TypeError(`init: options must be an object, got ${describeValue(options)}`);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (key !== 'backend' && key !== 'timeoutSeconds') throw new TypeError(`init: unknown option '${key}'`);
  const backend = o.backend ?? 'mpi';
  if (backend !== 'mpi') throw new TypeError(`init: backend must be 'mpi', got ${describeValue(backend)}`);
  const timeout = o.timeoutSeconds ?? 300;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0)
    throw new RangeError(`init: timeoutSeconds must be a finite number > 0, got ${describeValue(timeout)}`);
  return { backend, timeoutSeconds: timeout };
}

function onExit(backend: CollectiveBackend, code: number, fatal: { error?: unknown }): void {
  if (backend.destroyed) return;
  if (code === 0) {
    backend.destroy();
    return;
  }
  // Node prints an uncaught error only after the 'exit' listeners, and the abort ends the
  // process before that: print it here.
  const why = 'error' in fatal ? `an uncaught error:\n${inspect(fatal.error)}\n` : '';
  backend.abort(
    code,
    `exiting with code ${code} before destroy()${why ? `, after ${why}` : ' '}` +
      '(ending the job so that the other ranks do not wait for this one)',
  );
}

/** Starts (or returns) this process's group: `const group = await init()` in every rank. */
export async function init(options: InitOptions = {}): Promise<ProcessGroup> {
  const o = checkInitOptions(options);
  if (current && !current.destroyed) {
    current.timeoutSeconds = o.timeoutSeconds;
    return current;
  }
  if (current) throw new Error('init: this process already destroyed its process group; MPI cannot start twice');
  const backend = MpiBackend.start(o.timeoutSeconds);
  current = new ProcessGroup(backend);
  const fatal: { error?: unknown } = {};
  process.on('uncaughtExceptionMonitor', (error) => (fatal.error = error));
  process.once('exit', (code) => onExit(backend, code, fatal));
  return current;
}
