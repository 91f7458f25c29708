// getWeights() / setWeights(): the optimizer's state as tfjs named tensors, the form tfjs's
// model saving (includeOptimizer) writes next to the model's weights. In order:
//   'iter'                   int32 scalar: steps taken (tfjs's convention, first)
//   'fused_optim/state'      string scalar: JSON with the param groups (lr, betas, ...,
//                            initial_lr), each param's step count and which buffers it has,
//                            and the stochastic-rounding stream when there is one
//   '<param>/<buffer>'       float32, the param's shape: exp_avg, exp_avg_sq, ...
// Params are matched by name on the way back (not by position), so a model rebuilt with the
// same layer names but created in another order still gets its own state.
import * as tf from '@tensorflow/tfjs-core';
import type { StateDict } from '../fused_optimizer';
import type { AnyFusedOptimizer } from './binding';
import { type TransferCounts, readValues } from './backend_io';
import { describe, sameShape, shapeText } from './checks';

export const WEIGHTS_FORMAT = 'fused-optim/tfjs-optimizer-weights';
export const WEIGHTS_VERSION = 1;
export const STATE_TENSOR = 'fused_optim/state';

export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

interface WeightsManifest {
  format: string;
  version: number;
  algorithm: string;
  paramGroups: Array<{ dict: Record<string, unknown>; params: string[] }>;
  state: Array<{ param: string; scalars: Record<string, number>; buffers: string[] }>;
  rng?: { seed: number; counter: number };
}

type AnyStateDict = StateDict<Record<string, unknown>, Record<string, unknown>>;

function flatParams(fused: AnyFusedOptimizer) {
  return fused.paramGroups.flatMap((g) => g.params);
}

/** New tensors holding the optimizer's state (the caller owns them). */
export function encodeWeights(fused: AnyFusedOptimizer, iterations: number): NamedTensor[] {
  const sd = fused.stateDict() as AnyStateDict;
  const params = flatParams(fused);
  const manifest: WeightsManifest = {
    format: WEIGHTS_FORMAT,
    version: WEIGHTS_VERSION,
    algorithm: fused.constructor.name,
    paramGroups: sd.param_groups.map(({ params: ids, ...dict }) => ({
      dict,
      params: (ids as number[]).map((i) => params[i].name),
    })),
    state: [],
  };
  if (sd.rng) manifest.rng = sd.rng;
  const buffers: NamedTensor[] = [];
  for (const [key, entry] of Object.entries(sd.state)) {
    const p = params[Number(key)];
    const scalars: Record<string, number> = {};
    const names: string[] = [];
    for (const [k, v] of Object.entries(entry)) {
      if (v instanceof Float32Array) {
        names.push(k);
        buffers.push({ name: `${p.name}/${k}`, tensor: tf.tensor(v, [...p.data.shape], 'float32') });
      } else if (typeof v === 'number') {
        scalars[k] = v;
      }
    }
    manifest.state.push({ param: p.name, scalars, buffers: names });
  }
  return [
    { name: 'iter', tensor: tf.scalar(iterations, 'int32') },
    { name: STATE_TENSOR, tensor: tf.scalar(JSON.stringify(manifest), 'string') },
    ...buffers,
  ];
}

/**
 * Checks `weights` against the optimizer and returns what loads them: the state dict (in
 * torch's layout) and the step count. Reads every tensor now (the caller may dispose them).
 */
export function decodeWeights(
  fused: AnyFusedOptimizer,
  weights: unknown,
  counts: TransferCounts,
): { stateDict: AnyStateDict; iterations: number } {
  const where = 'TfjsOptimizer.setWeights';
  if (!Array.isArray(weights)) throw new TypeError(`${where}: expected an array of { name, tensor }`);
  const byName = new Map<string, tf.Tensor>();
  weights.forEach((w, i) => {
    if (w === null || typeof w !== 'object' || typeof w.name !== 'string' || !(w.tensor instanceof tf.Tensor))
      throw new TypeError(`${where}: weights[${i}] must be { name: string, tensor: tf.Tensor }, got ${describe(w)}`);
    if (byName.has(w.name)) throw new RangeError(`${where}: two weights are named '${w.name}'`);
    byName.set(w.name, w.tensor);
  });
  const iter = byName.get('iter');
  if (!iter || iter.size !== 1) throw new TypeError(`${where}: no 'iter' scalar (not weights of a TfjsOptimizer)`);
  const iterations = Number(iter.dataSync()[0]);
  if (!Number.isSafeInteger(iterations) || iterations < 0)
    throw new RangeError(`${where}: 'iter' must be a non-negative integer, got ${iterations}`);
  const stateTensor = byName.get(STATE_TENSOR);
  if (!stateTensor || stateTensor.dtype !== 'string')
    throw new TypeError(
      `${where}: no '${STATE_TENSOR}' string tensor: these are not the weights of a TfjsOptimizer (tfjs's own optimizers' ` +
        'state cannot be loaded into it)',
    );
  const manifest = parseManifest(String(stateTensor.dataSync()[0]), where);
  if (manifest.algorithm !== fused.constructor.name)
    throw new TypeError(
      `${where}: the weights are the state of a ${manifest.algorithm} but the optimizer is a ${fused.constructor.name}`,
    );
  const params = flatParams(fused);
  const indexOf = new Map(params.map((p, i) => [p.name, i]));
  if (manifest.paramGroups.length !== fused.paramGroups.length)
    throw new RangeError(
      `${where}: the weights have ${manifest.paramGroups.length} param groups but the optimizer has ${fused.paramGroups.length}`,
    );
  const param_groups = manifest.paramGroups.map((g, gi) => {
    const mine = fused.paramGroups[gi].params.map((p) => p.name);
    if (!sameNames(g.params, mine))
      throw new RangeError(
        `${where}: param group ${gi} holds [${g.params.join(', ')}] in the weights but [${mine.join(', ')}] in the optimizer`,
      );
    return { ...g.dict, params: g.params.map((n) => indexOf.get(n)!) };
  });
  const state: Record<number, Record<string, unknown>> = {};
  for (const entry of manifest.state) {
    const index = indexOf.get(entry.param);
    if (index === undefined)
      throw new RangeError(`${where}: state for param '${entry.param}', which the optimizer lacks`);
    const p = params[index];
    const s: Record<string, unknown> = { ...entry.scalars };
    for (const k of entry.buffers) {
      const t = byName.get(`${entry.param}/${k}`);
      if (!t) throw new RangeError(`${where}: tensor '${entry.param}/${k}' is missing`);
      if (t.dtype !== 'float32' || !sameShape(t.shape, p.data.shape))
        throw new RangeError(
          `${where}: tensor '${entry.param}/${k}' is ${t.dtype} ${shapeText(t.shape)} but param '${p.name}' is float32 ${shapeText(p.data.shape)}`,
        );
      s[k] = Float32Array.from(readValues(t, counts));
    }
    state[index] = s;
  }
  const stateDict: AnyStateDict = { state, param_groups } as AnyStateDict;
  if (manifest.rng) stateDict.rng = manifest.rng;
  return { stateDict, iterations };
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

function parseManifest(text: string, where: string): WeightsManifest {
  let m: WeightsManifest;
  try {
    m = JSON.parse(text) as WeightsManifest;
  } catch (e) {
    throw new TypeError(`${where}: '${STATE_TENSOR}' is not JSON (${(e as Error).message})`);
  }
  if (m === null || typeof m !== 'object' || m.format !== WEIGHTS_FORMAT)
    throw new TypeError(`${where}: '${STATE_TENSOR}' is not ${WEIGHTS_FORMAT}`);
  if (m.version !== WEIGHTS_VERSION)
    throw new RangeError(`${where}: weights version ${describe(m.version)}; this version reads ${WEIGHTS_VERSION}`);
  if (!Array.isArray(m.paramGroups) || !Array.isArray(m.state))
    throw new TypeError(`${where}: '${STATE_TENSOR}' lacks paramGroups or state`);
  return m;
}
