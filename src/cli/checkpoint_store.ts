// The demo's checkpoint phase, behind a small interface: save(path, target) halfway through
// training, load(path, target) into freshly built params, optimizer and scheduler.
//
// The package's own saveCheckpoint/loadCheckpoint are used when this build of fused-optim
// exports them (looked up at run time, so the demo works before and after they land);
// otherwise the same round trip is made in memory through stateDict()/loadStateDict(),
// with a structured clone standing in for the file.
import * as api from '../index';
import type { Parameter } from '../parameter';

/** What a checkpoint holds: the model's params, the optimizer and the schedule. */
export interface CheckpointTarget {
  params: Parameter[];
  optimizer: { stateDict(): unknown; loadStateDict(sd: never): void };
  scheduler: { stateDict(): unknown; loadStateDict(sd: never): void };
}

export interface CheckpointStore {
  /** 'file' when the package's saveCheckpoint/loadCheckpoint are used, else 'memory'. */
  readonly kind: 'file' | 'memory';
  /** How the checkpoint is made, for the demo's output. */
  readonly description: string;
  save(path: string, target: CheckpointTarget): Promise<void>;
  load(path: string, target: CheckpointTarget): Promise<void>;
}

type CheckpointFn = (path: string, target: CheckpointTarget) => unknown;

/** The package's checkpoint functions when they exist in this build, else undefined. */
function packageCheckpointFunctions(): { save: CheckpointFn; load: CheckpointFn } | undefined {
  const lib = api as unknown as Record<string, unknown>;
  if (typeof lib.saveCheckpoint === 'function' && typeof lib.loadCheckpoint === 'function') {
    return { save: lib.saveCheckpoint as CheckpointFn, load: lib.loadCheckpoint as CheckpointFn };
  }
  return undefined;
}

function fileStore(fns: { save: CheckpointFn; load: CheckpointFn }): CheckpointStore {
  return {
    kind: 'file',
    description: 'saveCheckpoint/loadCheckpoint (a checkpoint file)',
    async save(path, target) {
      await fns.save(path, target);
    },
    async load(path, target) {
      await fns.load(path, target);
    },
  };
}

interface MemoryCheckpoint {
  params: Array<Float32Array | Uint16Array>;
  optimizer: unknown;
  scheduler: unknown;
}

function memoryStore(why: string): CheckpointStore {
  const saved = new Map<string, MemoryCheckpoint>();
  return {
    kind: 'memory',
    description: `stateDict()/loadStateDict() in memory (${why})`,
    async save(path, { params, optimizer, scheduler }) {
      // A deep copy, as a file would be: nothing shared with the live objects.
      saved.set(
        path,
        structuredClone({
          params: params.map((p) => (p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())),
          optimizer: optimizer.stateDict(),
          scheduler: scheduler.stateDict(),
        }),
      );
    },
    async load(path, { params, optimizer, scheduler }) {
      const ck = saved.get(path);
      if (!ck) throw new Error(`no checkpoint was saved at ${path}`);
      if (ck.params.length !== params.length)
        throw new Error(`the checkpoint has ${ck.params.length} params but the model has ${params.length}`);
      params.forEach((p, i) => p.data.copyFrom(ck.params[i]));
      // Optimizer first: it restores each group's lr and initial_lr; then the schedule.
      optimizer.loadStateDict(structuredClone(ck.optimizer) as never);
      scheduler.loadStateDict(structuredClone(ck.scheduler) as never);
    },
  };
}

/** The package's checkpoint files when available, else the in-memory round trip. */
export function checkpointStore(forceMemory = false): CheckpointStore {
  if (forceMemory) return memoryStore('FUSED_OPTIM_DEMO_MEMORY_CHECKPOINT=1');
  const fns = packageCheckpointFunctions();
  return fns ? fileStore(fns) : memoryStore('this build of fused-optim has no saveCheckpoint/loadCheckpoint yet');
}
