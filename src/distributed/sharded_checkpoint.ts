// Checkpoints of a ZeroRedundancyOptimizer run (docs/distributed.md, "Checkpoints").
//
// Sharded: every rank saves its shard (its params' values and optimizer state) with
// saveCheckpoint, atomic as always, under a name unique to this save; rank 0 saves the
// scheduler, the scaler and `extra` to a small meta file, and, once every rank has saved,
// commits the save by replacing manifest.json atomically. A save that fails or is killed
// anywhere leaves the previous manifest and the files it names untouched.
//
// Loading works in two phases on every rank: first each rank reads and checks everything
// it needs into scratch copies (its new shard's params and state, from the old shards that
// hold them, with optimizers the factory builds), then the ranks agree, and only if every
// rank succeeded do they apply it; otherwise every rank throws and nothing changed. The old
// shards may come from another number of ranks: each param's state moves to its new owner.
//
// Consolidated: one checkpoint file of the whole run (the root gathers the state), which a
// single process loads with loadCheckpoint and a ZeRO run of any size with loadShardedCheckpoint.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, type Stateful, loadCheckpoint, saveCheckpoint } from '../checkpoint/checkpoint';
import type { CheckpointErrorCode } from '../checkpoint/errors';
import type { Parameter } from '../parameter';
import { copyParam, consolidate } from './consolidate';
import { allGatherJson, broadcastJson } from './exchange';
import { describeValue } from './host_arrays';
import { type ShardOptimizer, ZeroRedundancyOptimizer } from './zero';

export const SHARDED_CHECKPOINT_FORMAT = 'fused-optim/sharded-checkpoint';
export const SHARDED_CHECKPOINT_VERSION = 1;
const MANIFEST = 'manifest.json';

export interface SaveShardedCheckpointOptions {
  optimizer: ZeroRedundancyOptimizer;
  scheduler?: Stateful;
  scaler?: Stateful;
  /** Anything saveCheckpoint's `extra` takes; rank 0's is saved and returned on load. */
  extra?: unknown;
}

export interface LoadShardedCheckpointOptions {
  optimizer: ZeroRedundancyOptimizer;
  scheduler?: Stateful;
  scaler?: Stateful;
}

interface ShardEntry {
  rank: number;
  file: string;
  bytes: number;
  /** The shard optimizer's groups: the global group and the params' names. */
  groups: Array<{ group: number; params: string[] }>;
}

interface Manifest {
  format: string;
  version: number;
  saveId: string;
  worldSize: number;
  optimizer: string;
  /** Every global group's param names and hyperparameters at the save. */
  paramGroups: Array<{ params: string[]; hyperparameters: Record<string, unknown> }>;
  meta: { file: string; bytes: number };
  shards: ShardEntry[];
}

interface ShardMeta {
  saveId: string;
  rank: number;
  worldSize: number;
}

type Part = { class: string; state: unknown } | null;

function checkStateful(o: unknown, what: string, op: string): void {
  if (o === undefined) return;
  const s = o as Partial<Stateful> | null;
  if (s === null || typeof s !== 'object' || typeof s.stateDict !== 'function' || typeof s.loadStateDict !== 'function')
    throw new TypeError(`${op}: ${what} must have stateDict() and loadStateDict(), got ${describeValue(o)}`);
}

function checkOptions(options: unknown, allowed: string[], op: string): asserts options is { optimizer: unknown } {
  if (options === null || typeof options !== 'object')
    throw new TypeError(
      `${op}: options must be { optimizer, scheduler?, scaler?${allowed.includes('extra') ? ', extra?' : ''} }`,
    );
  for (const key of Object.keys(options))
    if (!allowed.includes(key)) throw new TypeError(`${op}: unknown option '${key}'`);
  if (!((options as { optimizer: unknown }).optimizer instanceof ZeroRedundancyOptimizer))
    throw new TypeError(
      `${op}: optimizer must be a ZeroRedundancyOptimizer, got ${describeValue((options as { optimizer: unknown }).optimizer)}`,
    );
}

function className(o: object): string {
  return (o.constructor as { name?: string } | undefined)?.name || 'Object';
}

function shardFile(rank: number, world: number, id: string): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `shard-${pad(rank)}-of-${pad(world)}.${id}.safetensors`;
}

async function writeJsonAtomically(file: string, value: unknown): Promise<void> {
  const tmp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
  );
  const fh = await fsp.open(tmp, 'wx');
  try {
    await fh.writeFile(`${JSON.stringify(value, null, 1)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  }
  const dir = await fsp.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Every rank's error (or null); throws the same CheckpointError on every rank if any failed. */
async function agree(
  group: ZeroRedundancyOptimizer['group'],
  error: string | null,
  op: string,
  where: string,
  tail: string,
  code: CheckpointErrorCode,
) {
  const all = (await allGatherJson(group, error, `${op}: outcome`)) as Array<string | null>;
  const failed = all.flatMap((e, r) => (e === null ? [] : [`rank ${r}: ${e}`]));
  if (failed.length > 0) throw new CheckpointError(op, where, `${failed.join('; ')}; ${tail}`, code);
}

// ---------------------------------------------------------------------------------------
// Save

/**
 * Saves the run to folder `dir` (created if needed): one file per rank plus manifest.json.
 * Every rank must call it. Do not step until it resolves.
 */
export async function saveShardedCheckpoint(dir: string, options: SaveShardedCheckpointOptions): Promise<void> {
  const op = 'saveShardedCheckpoint';
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`${op}: dir must be a non-empty path string`);
  checkOptions(options, ['optimizer', 'scheduler', 'scaler', 'extra'], op);
  const { optimizer: zero, scheduler, scaler, extra } = options;
  checkStateful(scheduler, 'scheduler', op);
  checkStateful(scaler, 'scaler', op);
  const group = zero.group;
  const root = path.resolve(dir);
  const id = (await broadcastJson(
    group,
    `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`,
    0,
    `${op}: save id`,
  )) as string;
  zero.syncLocalHyperparameters();
  const world = group.worldSize;
  const mine = shardFile(group.rank, world, id);
  const metaFile = `meta.${id}.safetensors`;
  const written: string[] = [];
  let error: string | null = null;
  let entry: ShardEntry | undefined;
  let metaBytes = 0;
  try {
    await fsp.mkdir(root, { recursive: true });
    const local = zero.localOptimizer;
    const shard: ShardMeta = { saveId: id, rank: group.rank, worldSize: world };
    written.push(mine);
    await saveCheckpoint(path.join(root, mine), {
      params: zero.shardParams(),
      optimizer: local ?? undefined,
      extra: { fused_optim_shard: shard },
    });
    entry = {
      rank: group.rank,
      file: mine,
      bytes: (await fsp.stat(path.join(root, mine))).size,
      groups: local
        ? local.paramGroups.map((g, i) => ({ group: zero.localGroups[i], params: g.params.map((p) => p.name) }))
        : [],
    };
    if (group.rank === 0) {
      const part = (s: Stateful | undefined): Part => (s ? { class: className(s), state: s.stateDict() } : null);
      written.push(metaFile);
      await saveCheckpoint(path.join(root, metaFile), {
        params: [],
        extra: {
          fused_optim_shard: { saveId: id, rank: -1, worldSize: world },
          scheduler: part(scheduler),
          scaler: part(scaler),
          user: extra === undefined ? null : { value: extra },
        },
      });
      metaBytes = (await fsp.stat(path.join(root, metaFile))).size;
    }
  } catch (e) {
    error = errorText(e);
  }
  const removeMine = () => Promise.all(written.map((f) => fsp.unlink(path.join(root, f)).catch(() => {})));
  const entries = (await allGatherJson(
    group,
    error === null ? entry : null,
    `${op}: shards`,
  )) as Array<ShardEntry | null>;
  try {
    await agree(group, error, op, root, 'the previous checkpoint (if any) is unchanged', 'WriteFailed');
  } catch (e) {
    await removeMine();
    throw e;
  }

  // Rank 0 commits: the new manifest replaces the old one in one rename.
  let commitError: string | null = null;
  if (group.rank === 0) {
    try {
      const manifest: Manifest = {
        format: SHARDED_CHECKPOINT_FORMAT,
        version: SHARDED_CHECKPOINT_VERSION,
        saveId: id,
        worldSize: world,
        optimizer: zero.optimizerClass,
        paramGroups: zero.paramGroups.map((g, i) => ({
          params: g.params.map((p) => p.name),
          hyperparameters: zero.hyperparameters()[i],
        })),
        meta: { file: metaFile, bytes: metaBytes },
        shards: entries as ShardEntry[],
      };
      await writeJsonAtomically(path.join(root, MANIFEST), manifest);
    } catch (e) {
      commitError = errorText(e);
    }
  }
  const committed = (await broadcastJson(group, commitError, 0, `${op}: commit`)) as string | null;
  if (committed !== null) {
    await removeMine();
    throw new CheckpointError(
      op,
      root,
      `rank 0 could not write ${MANIFEST}: ${committed}; the previous checkpoint (if any) is unchanged`,
      'WriteFailed',
    );
  }
  // Files no manifest names any more: the previous save's, and those of saves that failed
  // or were killed (with their temporary files); every rank has finished writing by now.
  // The folder is shared, so rank 0 removes them.
  if (group.rank === 0) {
    const keep = new Set([metaFile, ...(entries as ShardEntry[]).map((e) => e.file)]);
    const ours = /^\.?(shard-\d+-of-\d+|meta)\.[0-9a-z-]+\.safetensors(\.tmp-.*)?$/;
    const names = await fsp.readdir(root).catch(() => [] as string[]);
    await Promise.all(
      names.filter((f) => ours.test(f) && !keep.has(f)).map((f) => fsp.unlink(path.join(root, f)).catch(() => {})),
    );
  }
}

/**
 * Saves the whole run to one checkpoint file (saveCheckpoint's format), gathered on
 * `root`: a single process loads it with loadCheckpoint into an optimizer of the shard
 * optimizers' class, a ZeRO run of any size with loadShardedCheckpoint. Every rank must call it.
 */
export async function saveConsolidatedCheckpoint(
  file: string,
  options: SaveShardedCheckpointOptions & { root?: number },
): Promise<void> {
  const op = 'saveConsolidatedCheckpoint';
  if (typeof file !== 'string' || file === '') throw new TypeError(`${op}: file must be a non-empty path string`);
  checkOptions(options, ['optimizer', 'scheduler', 'scaler', 'extra', 'root'], op);
  const { optimizer: zero, scheduler, scaler, extra, root = 0 } = options;
  checkStateful(scheduler, 'scheduler', op);
  checkStateful(scaler, 'scaler', op);
  const whole = await consolidate(zero, root);
  let error: string | null = null;
  if (whole) {
    try {
      await saveCheckpoint(file, { params: whole.params, optimizer: whole.optimizer, scheduler, scaler, extra });
    } catch (e) {
      error = errorText(e);
    } finally {
      for (const p of whole.params) p.data.dispose();
    }
  }
  const outcome = (await broadcastJson(zero.group, error, root, `${op}: outcome`)) as string | null;
  if (outcome !== null) throw new CheckpointError(op, path.resolve(file), `rank ${root}: ${outcome}`, 'WriteFailed');
}

// ---------------------------------------------------------------------------------------
// Load

async function readManifest(dir: string): Promise<Manifest> {
  const text = await fsp.readFile(path.join(dir, MANIFEST), 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${MANIFEST} is not valid JSON (${errorText(e)})`);
  }
  return checkManifest(json);
}

function checkManifest(json: unknown): Manifest {
  const bad = (what: string): never => {
    throw new Error(`${MANIFEST}: ${what}`);
  };
  const m = json as Manifest;
  if (m === null || typeof m !== 'object') bad('not an object');
  if (m.format !== SHARDED_CHECKPOINT_FORMAT)
    bad(`not a fused-optim sharded checkpoint (format ${JSON.stringify(m.format)})`);
  if (m.version !== SHARDED_CHECKPOINT_VERSION)
    bad(`version ${JSON.stringify(m.version)}; this fused-optim reads version ${SHARDED_CHECKPOINT_VERSION}`);
  if (typeof m.saveId !== 'string' || !/^[0-9a-z-]+$/.test(m.saveId)) bad('saveId must be a string of [0-9a-z-]');
  if (!Number.isSafeInteger(m.worldSize) || m.worldSize < 1) bad('worldSize must be a positive integer');
  if (typeof m.optimizer !== 'string') bad('optimizer must be a class name');
  if (!Array.isArray(m.paramGroups)) bad('paramGroups must be an array');
  m.paramGroups.forEach((g, i) => {
    if (!g || !Array.isArray(g.params) || !g.params.every((n) => typeof n === 'string'))
      bad(`paramGroups[${i}].params must be an array of names`);
    if (!g.hyperparameters || typeof g.hyperparameters !== 'object')
      bad(`paramGroups[${i}].hyperparameters must be an object`);
  });
  const safeFile = (f: unknown, what: string) => {
    if (typeof f !== 'string' || f !== path.basename(f) || f.startsWith('.') || !f.endsWith('.safetensors'))
      bad(`${what} must be a file name in the checkpoint folder`);
  };
  if (!m.meta || typeof m.meta !== 'object') bad('meta must be an object');
  safeFile(m.meta.file, 'meta.file');
  if (!Array.isArray(m.shards) || m.shards.length !== m.worldSize) bad(`shards must list ${m.worldSize} shards`);
  m.shards.forEach((s, r) => {
    if (!s || s.rank !== r) bad(`shards[${r}].rank must be ${r}`);
    safeFile(s.file, `shards[${r}].file`);
    if (!Number.isSafeInteger(s.bytes) || s.bytes < 0) bad(`shards[${r}].bytes must be a byte count`);
    if (!Array.isArray(s.groups)) bad(`shards[${r}].groups must be an array`);
    s.groups.forEach((g, i) => {
      if (!g || !Number.isSafeInteger(g.group) || g.group < 0 || g.group >= m.paramGroups.length)
        bad(`shards[${r}].groups[${i}].group must be a param group index`);
      if (!Array.isArray(g.params) || !g.params.every((n) => typeof n === 'string'))
        bad(`shards[${r}].groups[${i}].params must be an array of names`);
    });
  });
  return m;
}

interface Source {
  file: string;
  /** The saved optimizer's groups (global group, param names); empty: no optimizer. */
  groups: Array<{ group: number; params: string[] }>;
  bytes?: number;
  shard?: ShardMeta;
}

interface Staged {
  /** Per param name: its scratch copy (values) and its state, if it had any. */
  params: Map<string, { scratch: Parameter; state?: Record<string, unknown> }>;
  /** Per global group: the dict form of its saved hyperparameters. */
  groupDicts: Map<number, Record<string, unknown>>;
  others: Record<string, unknown>;
  scratch: Parameter[];
}

// Loads `source` into scratch copies of its params, through an optimizer the factory
// builds over them; keeps what `wanted` names.
async function stage(
  zero: ZeroRedundancyOptimizer,
  source: Source,
  wanted: Set<string>,
  into: Staged,
  byName: Map<string, Parameter>,
) {
  const scratchOf = (name: string) => {
    const live = byName.get(name);
    if (!live) throw new Error(`${source.file} holds param '${name}', which the optimizer does not have`);
    const s = copyParam(live);
    into.scratch.push(s);
    return s;
  };
  const groups = source.groups.map((g) => ({ group: g.group, params: g.params.map(scratchOf) }));
  const temp: ShardOptimizer | undefined = groups.length ? zero.buildWith(zero.factoryInputFor(groups)) : undefined;
  const params = groups.flatMap((g) => g.params);
  const extra = await loadCheckpoint(source.file, { params, optimizer: temp });
  const meta = (extra as { fused_optim_shard?: ShardMeta } | undefined)?.fused_optim_shard;
  if (source.shard) {
    if (
      !meta ||
      meta.saveId !== source.shard.saveId ||
      meta.rank !== source.shard.rank ||
      meta.worldSize !== source.shard.worldSize
    )
      throw new CheckpointError(
        'loadShardedCheckpoint',
        source.file,
        `the file is not shard ${source.shard.rank} of save ${source.shard.saveId} (it says ${JSON.stringify(meta ?? null)})`,
        'InvalidManifest',
      );
  }
  if (!temp) return extra;
  const sd = temp.stateDict() as unknown as {
    state: Record<number, Record<string, unknown>>;
    param_groups: Array<Record<string, unknown>>;
    [key: string]: unknown;
  };
  const { state, param_groups, ...others } = sd;
  into.others = others;
  groups.forEach((g, i) => {
    const { params: _p, ...dict } = param_groups[i];
    into.groupDicts.set(g.group, dict);
  });
  params.forEach((p, i) => {
    if (wanted.has(p.name)) into.params.set(p.name, { scratch: p, state: state[i] });
  });
  return extra;
}

function snapshot(s: Stateful | undefined): (() => void) | undefined {
  if (!s) return undefined;
  const before = s.stateDict();
  return () => s.loadStateDict(before as never);
}

/**
 * Restores a run saved by saveShardedCheckpoint (a folder) or saveConsolidatedCheckpoint
 * (a file) into `optimizer` (its params, every rank's shard state, its hyperparameters),
 * `scheduler` and `scaler`, and returns the saved `extra`. The number of ranks may differ
 * from the save's. Every rank must call it; on any error on any rank nothing changes on
 * any rank and every rank throws the same CheckpointError.
 */
export async function loadShardedCheckpoint(target: string, options: LoadShardedCheckpointOptions): Promise<unknown> {
  const op = 'loadShardedCheckpoint';
  if (typeof target !== 'string' || target === '') throw new TypeError(`${op}: target must be a non-empty path string`);
  checkOptions(options, ['optimizer', 'scheduler', 'scaler'], op);
  const { optimizer: zero, scheduler, scaler } = options;
  checkStateful(scheduler, 'scheduler', op);
  checkStateful(scaler, 'scaler', op);
  const group = zero.group;
  const where = path.resolve(target);
  const all = zero.paramGroups.flatMap((g) => g.params);
  const byName = new Map(all.map((p) => [p.name, p]));
  const mine = new Set(zero.shardParams().map((p) => p.name));
  const staged: Staged = { params: new Map(), groupDicts: new Map(), others: {}, scratch: [] };
  const undo: Array<() => void> = [];
  let extra: unknown;
  let hyper: Record<string, unknown>[] | undefined;
  let error: string | null = null;
  try {
    if (byName.size !== all.length || all.some((p) => !p.name))
      throw new Error('every param needs a unique, non-empty name (checkpoints store params by name)');
    const stat = await fsp.stat(where);
    if (stat.isDirectory()) {
      const m = await readManifest(where);
      if (m.optimizer !== zero.optimizerClass)
        throw new Error(
          `the checkpoint holds the state of a ${m.optimizer} but the shard optimizers are ${zero.optimizerClass}`,
        );
      if (m.paramGroups.length !== zero.paramGroups.length)
        throw new Error(
          `the checkpoint has ${m.paramGroups.length} param groups but the optimizer has ${zero.paramGroups.length}`,
        );
      m.paramGroups.forEach((g, i) => {
        const here = zero.paramGroups[i].params.map((p) => p.name);
        const a = [...g.params].sort().join('\n');
        if (a !== [...here].sort().join('\n'))
          throw new Error(`param group ${i} holds other params in the checkpoint than in the optimizer`);
      });
      const sources: Source[] = m.shards
        .filter((s) => s.groups.some((g) => g.params.some((n) => mine.has(n))))
        .map((s) => ({
          file: path.join(where, s.file),
          groups: s.groups,
          bytes: s.bytes,
          shard: { saveId: m.saveId, rank: s.rank, worldSize: m.worldSize },
        }));
      // Every file of the save is there and of its size (each rank reads only some).
      for (const s of [...m.shards, m.meta]) {
        const size = (await fsp.stat(path.join(where, s.file)).catch(() => undefined))?.size;
        if (size === undefined) throw new Error(`${s.file} is missing`);
        if (size !== s.bytes)
          throw new Error(`${s.file} has ${size} bytes but the manifest says ${s.bytes}: it is not this save's`);
      }
      for (const s of sources) await stage(zero, s, mine, staged, byName);
      const meta = (await loadCheckpoint(path.join(where, m.meta.file), { params: [] })) as {
        fused_optim_shard?: ShardMeta;
        scheduler: Part;
        scaler: Part;
        user: { value: unknown } | null;
      };
      if (meta?.fused_optim_shard?.saveId !== m.saveId)
        throw new Error(`${m.meta.file} is not the meta file of save ${m.saveId}`);
      // The scaler and scheduler check their dicts as they load them: loaded now, and put
      // back if any rank fails.
      for (const [what, target, part] of [
        ['scaler', scaler, meta.scaler],
        ['scheduler', scheduler, meta.scheduler],
      ] as const) {
        if (!target) continue;
        if (!part) throw new Error(`the checkpoint has no ${what} state`);
        if (part.class !== className(target))
          throw new Error(
            `the checkpoint holds the state of a ${part.class} ${what} but the ${what} is a ${className(target)}`,
          );
        const back = snapshot(target)!;
        try {
          target.loadStateDict(part.state as never);
        } catch (e) {
          back();
          throw new Error(`the ${what} rejected its state (${errorText(e)})`);
        }
        undo.push(back);
      }
      extra = meta.user?.value;
      hyper = m.paramGroups.map((g) => g.hyperparameters);
    } else {
      // One consolidated file: every param and state; its scheduler and scaler are loaded now
      // (and put back if any rank fails).
      const source: Source = {
        file: where,
        groups: zero.paramGroups.map((g, i) => ({ group: i, params: g.params.map((p) => p.name) })),
      };
      const backScheduler = snapshot(scheduler);
      const backScaler = snapshot(scaler);
      const scratchAll = new Map(all.map((p) => [p.name, copyParam(p)]));
      staged.scratch.push(...scratchAll.values());
      const temp = zero.buildWith(
        zero.factoryInputFor(
          zero.paramGroups.map((g, i) => ({ group: i, params: g.params.map((p) => scratchAll.get(p.name)!) })),
        ),
      );
      extra = await loadCheckpoint(source.file, {
        params: [...scratchAll.values()],
        optimizer: temp,
        scheduler,
        scaler,
      });
      if (backScheduler) undo.push(backScheduler);
      if (backScaler) undo.push(backScaler);
      const sd = temp.stateDict() as unknown as {
        state: Record<number, Record<string, unknown>>;
        param_groups: Array<Record<string, unknown>>;
        [key: string]: unknown;
      };
      const { state, param_groups, ...others } = sd;
      staged.others = others;
      param_groups.forEach((g, i) => {
        const { params: _p, ...dict } = g;
        staged.groupDicts.set(i, dict);
      });
      const flat = temp.paramGroups.flatMap((g) => g.params);
      flat.forEach((p, i) => {
        if (mine.has(p.name)) staged.params.set(p.name, { scratch: p, state: state[i] });
      });
      hyper = temp.paramGroups.map((g) => {
        const { params: _p, ...rest } = g;
        return JSON.parse(JSON.stringify(rest)) as Record<string, unknown>;
      });
    }
  } catch (e) {
    error = errorText(e);
  }
  try {
    await agree(group, error, op, where, 'nothing was changed', 'Rejected');
  } catch (e) {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch {
        // best effort: the original error is what matters
      }
    }
    for (const p of staged.scratch) p.data.dispose();
    throw e;
  }

  // Phase 2: every rank staged everything; apply.
  try {
    applyStaged(zero, staged, hyper!);
    await zero.syncParams();
  } finally {
    for (const p of staged.scratch) p.data.dispose();
  }
  return extra;
}

// The optimizer's part: hyperparameters, this rank's state (checked when it was staged
// through an optimizer of the same class), its params' values.
function applyStaged(zero: ZeroRedundancyOptimizer, staged: Staged, hyper: Record<string, unknown>[]): void {
  zero.setHyperparameters(hyper);
  const local = zero.localOptimizer;
  if (local) {
    const flat = local.paramGroups.flatMap((g) => g.params);
    const state: Record<number, Record<string, unknown>> = {};
    flat.forEach((p, i) => {
      const s = staged.params.get(p.name)?.state;
      if (s) state[i] = s;
    });
    let index = 0;
    const param_groups = local.paramGroups.map((g, i) => ({
      ...staged.groupDicts.get(zero.localGroups[i]),
      params: g.params.map(() => index++),
    }));
    local.loadStateDict({ ...staged.others, state, param_groups } as never);
    // Values: a half param with a saved master was written from it by loadStateDict.
    for (const p of flat) {
      const s = staged.params.get(p.name);
      if (!s) continue;
      if (p.data.dtype !== 'float32' && s.state && 'master' in s.state) continue;
      const v = s.scratch.data;
      p.data.copyFrom(v.dtype === 'float32' ? v.toFloat32Array() : v.toBits());
    }
  }
}
