// Helpers that build ordinary param groups: no weight decay for biases and normalization
// weights (the seed course's rule), and BEiT/timm-style layer-wise lr decay for AdamW.
import type { AdamWParamGroup } from './adamw';
import { encoderLayerIndex } from './layerwise';
import { checkBoolean, checkFunction, checkInteger, checkNumber, checkOptions, mustBe } from './checks';
import { Parameter } from './parameter';

type Group = Partial<AdamWParamGroup> & { params: Parameter[] };

export interface NoDecayOptions {
  weightDecay: number;
  /** Name fragments whose params get no weight decay. */
  noDecay?: readonly string[];
  /** Also exempt every param with at most one dimension (biases, norm scales). */
  oneDimNoDecay?: boolean;
}

function checkParams(params: Iterable<Parameter>, where: string): Parameter[] {
  if (params === null || typeof params !== 'object' || typeof params[Symbol.iterator] !== 'function')
    throw new TypeError(mustBe(`${where}: params`, 'an array of Parameters', params));
  const list = [...params];
  list.forEach((p, i) => {
    if (!(p instanceof Parameter)) throw new TypeError(mustBe(`${where}: params[${i}]`, 'a Parameter', p));
  });
  if (list.length === 0) throw new RangeError(`${where}: params is empty`);
  return list;
}

function checkStrings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.some((f) => typeof f !== 'string'))
    throw new TypeError(mustBe(what, 'an array of strings', value));
  return value as string[];
}

function isNoDecay(p: Parameter, fragments: readonly string[], oneDim: boolean): boolean {
  return fragments.some((f) => p.name.includes(f)) || (oneDim && p.data.shape.length <= 1);
}

/**
 * Two groups: params with weight decay, and those matching `noDecay` (default bias,
 * LayerNorm.weight, norm) with weightDecay 0. Empty groups are left out.
 */
export function noDecayParamGroups(params: Iterable<Parameter>, options: NoDecayOptions): Group[] {
  const list = checkParams(params, 'noDecayParamGroups');
  const o = checkOptions(options, 'noDecayParamGroups: options', [
    'weightDecay',
    'noDecay',
    'oneDimNoDecay',
  ]) as Partial<NoDecayOptions>;
  const weightDecay = checkNumber(o.weightDecay, 'noDecayParamGroups: weightDecay', { min: 0 });
  const fragments = checkStrings(o.noDecay ?? ['bias', 'LayerNorm.weight', 'norm'], 'noDecayParamGroups: noDecay');
  const oneDim = checkBoolean(o.oneDimNoDecay ?? false, 'noDecayParamGroups: oneDimNoDecay');
  const decay = list.filter((p) => !isNoDecay(p, fragments, oneDim));
  const noDecay = list.filter((p) => isNoDecay(p, fragments, oneDim));
  const groups: Group[] = [];
  if (decay.length) groups.push({ params: decay, weightDecay });
  if (noDecay.length) groups.push({ params: noDecay, weightDecay: 0 });
  return groups;
}

export interface LayerwiseOptions {
  lr: number;
  /** lr multiplier per layer below the top. */
  decay: number;
  nLayers: number;
  /**
   * The layer of a param, 0 (embeddings) to nLayers + 1 (the head). Default: 0 for names
   * containing "embedding", N + 1 for "encoder.layers.N", nLayers + 1 otherwise.
   */
  layerOf?: (p: Parameter) => number;
  weightDecay?: number;
  /** Name fragments exempt from weight decay (default bias, LayerNorm.weight, norm). */
  noDecay?: readonly string[];
}

/**
 * BEiT/timm-style groups for AdamW: a param in layer L gets lr * decay^(nLayers + 1 - L),
 * and the decay is applied with that scaled lr (unlike AdamWDL, whose decay uses the base
 * lr). One group per (layer, decay / no decay), in layer order.
 */
export function layerwiseParamGroups(params: Iterable<Parameter>, options: LayerwiseOptions): Group[] {
  const list = checkParams(params, 'layerwiseParamGroups');
  const where = 'layerwiseParamGroups';
  const o = checkOptions(options, `${where}: options`, [
    'lr',
    'decay',
    'nLayers',
    'layerOf',
    'weightDecay',
    'noDecay',
  ]) as Partial<LayerwiseOptions>;
  const lr = checkNumber(o.lr, `${where}: lr`, { min: 0 });
  const decay = checkNumber(o.decay, `${where}: decay`, { min: 0 });
  const nLayers = checkInteger(o.nLayers, `${where}: nLayers`, { min: 0 });
  const weightDecay = checkNumber(o.weightDecay ?? 0, `${where}: weightDecay`, { min: 0 });
  const fragments = checkStrings(o.noDecay ?? ['bias', 'LayerNorm.weight', 'norm'], `${where}: noDecay`);
  if (o.layerOf !== undefined) checkFunction(o.layerOf, `${where}: layerOf`);
  const layerOf =
    o.layerOf ??
    ((p: Parameter) => {
      const n = encoderLayerIndex(p.name);
      if (n !== undefined) return n + 1;
      return p.name.includes('embedding') ? 0 : nLayers + 1;
    });
  const byKey = new Map<string, Group & { layer: number }>();
  for (const p of list) {
    const layer = layerOf(p);
    if (!Number.isSafeInteger(layer) || layer < 0 || layer > nLayers + 1) {
      throw new RangeError(
        `layerwiseParamGroups: param '${p.name}' is in layer ${layer}; layers go from 0 to nLayers + 1 = ${nLayers + 1}`,
      );
    }
    const exempt = isNoDecay(p, fragments, false);
    const key = `${layer}/${exempt}`;
    if (!byKey.has(key)) {
      byKey.set(key, {
        layer,
        params: [],
        lr: lr * decay ** (nLayers + 1 - layer),
        weightDecay: exempt ? 0 : weightDecay,
      });
    }
    byKey.get(key)!.params.push(p);
  }
  return [...byKey.values()].sort((a, b) => a.layer - b.layer).map(({ layer: _layer, ...g }) => g);
}
