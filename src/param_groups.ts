// Helpers that build ordinary param groups: no weight decay for biases and normalization
// weights (the seed course's rule), and BEiT/timm-style layer-wise lr decay for AdamW.
import type { AdamWParamGroup } from './adamw';
import { encoderLayerIndex } from './layerwise';
import { checkFiniteNumber } from './optimizer';
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
  const list = [...params];
  list.forEach((p, i) => {
    if (!(p instanceof Parameter)) throw new TypeError(`${where}: params[${i}] is not a Parameter`);
  });
  if (list.length === 0) throw new RangeError(`${where}: params is empty`);
  return list;
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
  const weightDecay = checkFiniteNumber(options?.weightDecay, 'noDecayParamGroups: weightDecay', { min: 0 });
  const fragments = options.noDecay ?? ['bias', 'LayerNorm.weight', 'norm'];
  if (!Array.isArray(fragments) || fragments.some((f) => typeof f !== 'string'))
    throw new TypeError('noDecayParamGroups: noDecay must be an array of strings');
  const oneDim = options.oneDimNoDecay ?? false;
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
  const lr = checkFiniteNumber(options?.lr, 'layerwiseParamGroups: lr', { min: 0 });
  const decay = checkFiniteNumber(options.decay, 'layerwiseParamGroups: decay', { min: 0 });
  const { nLayers } = options;
  if (!Number.isSafeInteger(nLayers) || nLayers < 0)
    throw new RangeError(`layerwiseParamGroups: nLayers must be a non-negative integer, got ${nLayers}`);
  const weightDecay = checkFiniteNumber(options.weightDecay ?? 0, 'layerwiseParamGroups: weightDecay', { min: 0 });
  const fragments = options.noDecay ?? ['bias', 'LayerNorm.weight', 'norm'];
  const layerOf =
    options.layerOf ??
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
