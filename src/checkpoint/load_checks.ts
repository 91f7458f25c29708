// loadCheckpoint's checks of a manifest against what it is asked to restore, before any
// tensor byte is read: one phase per part (params, optimizer, scheduler and scaler, extra),
// each claiming the tensors it uses, then a check that every tensor of the file belongs to
// exactly one place. A failed check throws a CheckFailure (errors.ts) naming the problem.
import type { Parameter } from '../parameter';
import { type LoadCall, type Stateful, className } from './calls';
import { type Json, decodeState } from './codec';
import { fail } from './errors';
import { type Manifest, type ManifestOptimizer, type ManifestStateful, PARAM_DTYPES, sameShape } from './manifest';
import { type TensorIndex, tensorIndexOf } from './header_table';
import type { SafetensorsTensorInfo } from './safetensors_header';
import type { Slicer } from './yielding';

/** The file's tensors, each claimed by exactly one place in the manifest. */
export class TensorClaims {
  readonly tensors: TensorIndex;
  readonly #claimed: Uint8Array;
  constructor(tensors: ReadonlyMap<string, SafetensorsTensorInfo>) {
    this.tensors = tensorIndexOf(tensors);
    this.#claimed = new Uint8Array(this.tensors.size);
  }

  /** Claims a tensor; returns its position in the file (for this.tensors). */
  claim(name: string, where: string): number {
    const i = this.tensors.indexOf(name);
    if (i === undefined)
      fail('InvalidManifest', `${where} refers to tensor ${JSON.stringify(name)}, which the file does not have`);
    if (this.#claimed[i]) fail('InvalidManifest', `tensor ${JSON.stringify(name)} is used twice (${where})`);
    this.#claimed[i] = 1;
    return i;
  }

  /** Claims every tensor of an encoded value; returns their names. */
  claimAll(json: Json, where: string): string[] {
    const names: string[] = [];
    decodeValue(json, where, (tensor, at) => {
      this.claim(tensor, at);
      names.push(tensor);
      return null;
    });
    return names;
  }

  checkAllClaimed(): void {
    const i = this.#claimed.indexOf(0);
    if (i >= 0)
      fail('InvalidManifest', `tensor ${JSON.stringify(this.tensors.nameAt(i))} belongs to nothing in the manifest`);
  }
}

/** decodeState, with a malformed value reported as an invalid manifest. */
export function decodeValue(json: Json, where: string, resolve: (tensor: string, where: string) => unknown): unknown {
  try {
    return decodeState(json, where, resolve);
  } catch (e) {
    if (e instanceof Error && e.constructor === Error) fail('InvalidManifest', e.message, e);
    throw e;
  }
}

/** A param whose value the file holds and the load writes. */
export interface ParamValue {
  param: Parameter;
  tensor: string;
}

/** Params: names, dtypes, shapes; with `strict`, the same names on both sides. */
export async function checkParams(
  manifest: Manifest,
  claims: TensorClaims,
  call: LoadCall,
  slicer: Slicer,
): Promise<ParamValue[]> {
  const saved = new Map<string, Manifest['params'][number]>();
  for (const mp of manifest.params) {
    if (slicer.due()) await slicer.yield();
    if (saved.has(mp.name)) fail('InvalidManifest', `param '${mp.name}' is listed twice`);
    saved.set(mp.name, mp);
    const t = claims.claim(mp.tensor, `param '${mp.name}'`);
    if (claims.tensors.dtypeAt(t) !== PARAM_DTYPES[mp.dtype] || !claims.tensors.shapeIs(t, mp.shape))
      fail('InvalidManifest', `param '${mp.name}': its tensor does not match its dtype and shape`);
  }
  const values: ParamValue[] = [];
  for (const p of call.params.values()) {
    if (slicer.due()) await slicer.yield();
    const mp = saved.get(p.name);
    if (!mp) {
      if (call.strict)
        fail('ParamMismatch', `the checkpoint has no param '${p.name}' (pass strict: false to load the params it has)`);
      continue;
    }
    if (mp.dtype !== p.data.dtype)
      fail('ParamMismatch', `param '${p.name}' is ${mp.dtype} in the checkpoint but ${p.data.dtype} here`);
    if (!sameShape(mp.shape, p.data.shape))
      fail(
        'ParamMismatch',
        `param '${p.name}' has shape [${mp.shape.join(', ')}] in the checkpoint but [${p.data.shape.join(', ')}] here`,
      );
    values.push({ param: p, tensor: mp.tensor });
  }
  if (call.strict) {
    for (const name of saved.keys())
      if (!call.params.has(name))
        fail(
          'ParamMismatch',
          `the checkpoint has param '${name}', which is not among params (pass strict: false to ignore it)`,
        );
  }
  return values;
}

/** One param's saved optimizer state. */
export interface StateEntry {
  /** The param's index in the optimizer (torch's order). */
  index: number;
  param: Parameter;
  json: Json;
  /** Its tensors, each of the param's element count. */
  tensors: string[];
}

export interface OptimizerPart {
  part: ManifestOptimizer;
  entries: StateEntry[];
  /** Tensors inside the group dicts and the other entries (read into JavaScript). */
  dictTensors: string[];
}

/** The optimizer: its class, its groups (the same params, by name), state tensors of the params' sizes. */
export async function checkOptimizer(
  manifest: Manifest,
  claims: TensorClaims,
  call: LoadCall,
  slicer: Slicer,
): Promise<OptimizerPart | undefined> {
  const mo = manifest.optimizer;
  if (!call.optimizer) {
    if (mo) {
      claims.claimAll(mo.dict, 'optimizer state dict');
      claims.claimAll(mo.state, 'optimizer state');
      mo.param_groups.forEach((g, gi) => claims.claimAll(g.dict, `optimizer param_groups[${gi}]`));
    }
    return undefined;
  }
  if (!mo) return fail('OptimizerMismatch', 'the checkpoint has no optimizer state');
  const cls = className(call.optimizer);
  if (mo.class !== cls)
    fail('OptimizerMismatch', `the checkpoint holds the state of a ${mo.class} but the optimizer is a ${cls}`);
  checkGroups(mo, call.optimizer.paramGroups);
  const indexOf = new Map(call.flat!.map((p, i) => [p.name, i]));
  const entries: StateEntry[] = [];
  for (const [name, json] of Object.entries(mo.state)) {
    if (slicer.due()) await slicer.yield();
    const index = indexOf.get(name);
    if (index === undefined)
      fail(
        'OptimizerMismatch',
        `the checkpoint has optimizer state for param '${name}', which the optimizer does not have`,
      );
    const param = call.flat![index];
    const tensors: string[] = [];
    decodeValue(json, `optimizer state of param '${name}'`, (tensor, at) => {
      const numel = claims.tensors.numelAt(claims.claim(tensor, at));
      // 8-bit state's `<buffer>_absmax` has one value per block (the optimizer checks the count).
      if (numel !== param.data.numel && !at.endsWith('_absmax'))
        fail('OptimizerMismatch', `${at} has ${numel} elements but the param has ${param.data.numel}`);
      tensors.push(tensor);
      return null;
    });
    entries.push({ index, param, json, tensors });
  }
  const dictTensors = claims.claimAll(mo.dict, 'optimizer state dict');
  mo.param_groups.forEach((g, gi) => {
    for (const t of claims.claimAll(g.dict, `optimizer param_groups[${gi}]`)) dictTensors.push(t);
  });
  return { part: mo, entries, dictTensors };
}

function checkGroups(mo: ManifestOptimizer, groups: ReadonlyArray<{ readonly params: readonly Parameter[] }>): void {
  if (mo.param_groups.length !== groups.length)
    fail(
      'OptimizerMismatch',
      `the checkpoint has ${mo.param_groups.length} param groups but the optimizer has ${groups.length}`,
    );
  const groupOf = new Map<string, number>();
  groups.forEach((g, gi) => g.params.forEach((p) => groupOf.set(p.name, gi)));
  mo.param_groups.forEach((g, gi) => {
    if (g.param_names.length !== groups[gi].params.length)
      fail(
        'OptimizerMismatch',
        `param group ${gi} has ${g.param_names.length} params in the checkpoint but ${groups[gi].params.length} in the optimizer`,
      );
    for (const name of g.param_names) {
      const here = groupOf.get(name);
      if (here === undefined)
        fail(
          'OptimizerMismatch',
          `param group ${gi} of the checkpoint has param '${name}', which the optimizer does not have`,
        );
      if (here !== gi)
        fail(
          'OptimizerMismatch',
          `param '${name}' is in param group ${gi} in the checkpoint but in group ${here} in the optimizer`,
        );
    }
    if (new Set(g.param_names).size !== g.param_names.length)
      fail('OptimizerMismatch', `param group ${gi} of the checkpoint lists a param twice`);
  });
}

/** A scheduler or scaler: present in the file, of the same class. Returns its tensors. */
export function checkStateful(
  target: Stateful | undefined,
  part: ManifestStateful | undefined,
  what: 'scheduler' | 'scaler',
  claims: TensorClaims,
): string[] {
  if (!target) {
    if (part) claims.claimAll(part.state_dict, `${what} state`);
    return [];
  }
  const code = what === 'scheduler' ? 'SchedulerMismatch' : 'ScalerMismatch';
  if (!part) return fail(code, `the checkpoint has no ${what} state`);
  const cls = className(target);
  if (part.class !== cls)
    fail(code, `the checkpoint holds the state of a ${part.class} ${what} but the ${what} is a ${cls}`);
  return claims.claimAll(part.state_dict, `${what} state`);
}
