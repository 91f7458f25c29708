// ZeroRedundancyOptimizer's whole state on one rank (torch's consolidate_state_dict): every
// rank's shard state travels to the root (a header, then the fp32 buffers in chunks, by
// broadcast: every backend has it), where one optimizer of the same class over copies of
// all the params takes it all. That optimizer's state dict is the one an unsharded run
// would have; saveCheckpoint of it is a checkpoint a single process loads.
import { Parameter } from '../parameter';
import { Tensor } from '../tensor';
import { broadcastFloats, broadcastJson } from './exchange';
import type { ShardOptimizer, ZeroRedundancyOptimizer } from './zero';

const CHUNK = 4 * 1024 * 1024; // elements per broadcast

interface Header {
  entries: Array<{ index: number; numbers: Record<string, number>; arrays: Array<[string, number]> }>;
  others: Record<string, unknown>;
}

/** A copy of a param: same name, dtype, shape and bits. */
export function copyParam(p: Parameter): Parameter {
  const data = Tensor.zeros(p.data.shape, { dtype: p.data.dtype, device: p.data.device });
  data.copyFrom(p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits());
  return new Parameter(data, { name: p.name });
}

function shardPayload(zero: ZeroRedundancyOptimizer): { header: Header; data: Float32Array } {
  const local = zero.localOptimizer;
  const header: Header = { entries: [], others: {} };
  if (!local) return { header, data: new Float32Array(0) };
  zero.syncLocalHyperparameters();
  // As fp32 (low-bit state decoded): the payload carries Float32Arrays, and the consolidated
  // optimizer's loadStateDict converts them to its own state dtype.
  const sd = local.stateDict({ stateDtype: 'float32' }) as unknown as {
    state: Record<number, Record<string, unknown>>;
    [key: string]: unknown;
  };
  const { state, param_groups: _groups, ...others } = sd;
  header.others = others;
  const flatLocal = local.paramGroups.flatMap((g) => g.params);
  const globalIndex = new Map(zero.paramGroups.flatMap((g) => g.params).map((p, i) => [p, i]));
  const parts: Float32Array[] = [];
  for (const [key, s] of Object.entries(state)) {
    const entry: Header['entries'][number] = {
      index: globalIndex.get(flatLocal[Number(key)])!,
      numbers: {},
      arrays: [],
    };
    for (const [name, v] of Object.entries(s)) {
      if (v instanceof Float32Array) {
        entry.arrays.push([name, v.length]);
        parts.push(v);
      } else if (typeof v === 'number') entry.numbers[name] = v;
    }
    header.entries.push(entry);
  }
  const data = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of parts) {
    data.set(a, at);
    at += a.length;
  }
  return { header, data };
}

function unpack(header: Header, data: Float32Array, into: Record<number, Record<string, unknown>>): void {
  let at = 0;
  for (const e of header.entries) {
    const s: Record<string, unknown> = { ...e.numbers };
    for (const [name, n] of e.arrays) {
      s[name] = data.slice(at, at + n);
      at += n;
    }
    into[e.index] = s;
  }
}

/**
 * On `root`: an optimizer of the shard optimizers' class over copies of all the params,
 * holding every rank's state; undefined elsewhere. Every rank must call it.
 */
export async function consolidate(
  zero: ZeroRedundancyOptimizer,
  root: number,
): Promise<{ optimizer: ShardOptimizer; params: Parameter[] } | undefined> {
  const group = zero.group;
  if (!Number.isSafeInteger(root) || root < 0 || root >= group.worldSize)
    throw new RangeError(`consolidateStateDict: root must be an integer from 0 to ${group.worldSize - 1}`);
  const mine = shardPayload(zero);
  const state: Record<number, Record<string, unknown>> = {};
  let others: Record<string, unknown> = mine.header.others;
  for (let r = 0; r < group.worldSize; r++) {
    if (r === root) {
      if (group.rank === root) unpack(mine.header, mine.data, state);
      continue;
    }
    const header = (await broadcastJson(group, mine.header, r, `consolidateStateDict: rank ${r}'s state`)) as Header;
    const total = header.entries.reduce((n, e) => n + e.arrays.reduce((m, [, k]) => m + k, 0), 0);
    const received = group.rank === root ? new Float32Array(total) : undefined;
    await broadcastFloats(
      group,
      group.rank === r ? mine.data : total,
      r,
      CHUNK,
      (offset, values) => received?.set(values, offset),
      `consolidateStateDict: rank ${r}'s state`,
    );
    if (received) {
      unpack(header, received, state);
      if (Object.keys(header.others).length > 0) others = header.others;
    }
  }
  if (group.rank !== root) return undefined;
  const copies = new Map(zero.paramGroups.flatMap((g) => g.params).map((p) => [p, copyParam(p)]));
  const optimizer = zero.buildWith(
    zero.factoryInputFor(zero.paramGroups.map((g, i) => ({ group: i, params: g.params.map((p) => copies.get(p)!) }))),
  );
  const fresh = optimizer.stateDict() as { param_groups: unknown[] };
  optimizer.loadStateDict({ ...others, state, param_groups: fresh.param_groups } as never);
  return { optimizer, params: [...copies.values()] };
}
