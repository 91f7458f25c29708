// getConfig() / fromConfig(): what rebuilds a TfjsOptimizer without the code that built it
// (tfjs's model saving with includeOptimizer stores it in model.json and tf.loadLayersModel
// calls fromConfig): the algorithm, every param group's hyperparameters by param name,
// gradient clipping, and for AdamWDL each param's lr ratio and decay switch (its rule is a
// function, so the ratios it gave are recorded instead).
//
// tfjs-layers camel-cases every string in a loaded optimizer config ('dense_Dense1/kernel'
// would come back as 'denseDense1/kernel'), so the recipe travels as base64-encoded JSON,
// which has no underscore for it to change.
import { AdamW } from '../adamw';
import { AdamWDL } from '../adamwdl';
import type { GradClip } from '../fused_optimizer';
import { Lion } from '../lion';
import type { Parameter } from '../parameter';
import type { AnyFusedOptimizer } from './binding';
import { describe, shapeText } from './checks';

export const RECIPE_FORMAT = 'fused-optim/tfjs-optimizer';
export const RECIPE_VERSION = 1;

type Algorithm = 'AdamW' | 'AdamWDL' | 'Lion';

export interface Recipe {
  format: string;
  version: number;
  algorithm: Algorithm;
  /** The params in the TfjsOptimizer's variable order (how a model's variables bind): name and shape. */
  params: Array<{ name: string; shape: number[] }>;
  /** Each group's hyperparameters (camelCase, as the constructors take them) and param names. */
  paramGroups: Array<{ params: string[]; [key: string]: unknown }>;
  gradClip: GradClip | null;
  lazyMode: boolean;
  adamwdl?: { layerwiseDecay: number; nLayers: number; rules: Array<[name: string, ratio: number, decay: boolean]> };
}

function algorithmOf(fused: AnyFusedOptimizer): Algorithm {
  if (fused instanceof AdamWDL) return 'AdamWDL';
  if (fused instanceof AdamW) return 'AdamW';
  if (fused instanceof Lion) return 'Lion';
  throw new TypeError(
    `TfjsOptimizer.getConfig: a ${fused.constructor.name} cannot be described (AdamW, AdamWDL and Lion can)`,
  );
}

/** The recipe of `fused`, whose params are `ordered` (the TfjsOptimizer's variable order). */
export function recipeOf(fused: AnyFusedOptimizer, ordered: readonly Parameter[]): Recipe {
  const algorithm = algorithmOf(fused);
  const params = ordered.map((p) => ({ name: p.name, shape: [...p.data.shape] }));
  const paramGroups = fused.paramGroups.map((g) => {
    const { params: groupParams, ...hyper } = g;
    return { ...(JSON.parse(JSON.stringify(hyper)) as object), params: groupParams.map((p) => p.name) };
  });
  const recipe: Recipe = {
    format: RECIPE_FORMAT,
    version: RECIPE_VERSION,
    algorithm,
    params,
    paramGroups,
    gradClip: fused.gradClip,
    lazyMode: fused.lazyMode,
  };
  if (fused instanceof AdamWDL) {
    const rules = [...fused.ratios].map(([name, r]) => [name, r.ratio, r.applyDecay] as [string, number, boolean]);
    recipe.adamwdl = { layerwiseDecay: fused.layerwiseDecay, nLayers: fused.nLayers, rules };
  }
  return recipe;
}

export function encodeRecipe(recipe: Recipe): string {
  return Buffer.from(JSON.stringify(recipe), 'utf8').toString('base64');
}

/** The recipe in a config from getConfig(), checked enough to rebuild from. */
export function decodeRecipe(config: unknown): Recipe {
  const where = 'TfjsOptimizer.fromConfig';
  const encoded = (config as { recipe?: unknown } | null)?.recipe;
  if (typeof encoded !== 'string')
    throw new TypeError(`${where}: the config has no recipe string (it was not written by TfjsOptimizer.getConfig)`);
  let r: Recipe;
  try {
    r = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as Recipe;
  } catch (e) {
    throw new TypeError(`${where}: the recipe is not base64-encoded JSON (${(e as Error).message})`);
  }
  if (r === null || typeof r !== 'object' || r.format !== RECIPE_FORMAT)
    throw new TypeError(`${where}: not a ${RECIPE_FORMAT} recipe`);
  if (r.version !== RECIPE_VERSION)
    throw new RangeError(`${where}: recipe version ${describe(r.version)}; this version reads ${RECIPE_VERSION}`);
  if (!['AdamW', 'AdamWDL', 'Lion'].includes(r.algorithm))
    throw new TypeError(`${where}: unknown algorithm ${describe(r.algorithm)}`);
  if (!Array.isArray(r.params) || !Array.isArray(r.paramGroups))
    throw new TypeError(`${where}: the recipe lacks params or paramGroups`);
  const names = new Set<string>();
  for (const p of r.params) {
    if (typeof p?.name !== 'string' || !Array.isArray(p.shape) || names.has(p.name))
      throw new TypeError(`${where}: bad param entry ${JSON.stringify(p)}`);
    names.add(p.name);
  }
  for (const g of r.paramGroups) {
    if (!Array.isArray(g?.params) || g.params.some((n) => !names.has(n)))
      throw new TypeError(`${where}: a param group names params the recipe does not list`);
  }
  return r;
}

/** Checks that `shapes` (the variables bound, in order) fit the recipe's params. */
export function checkRecipeFits(recipe: Recipe, shapes: ReadonlyArray<readonly number[]>, what: string): void {
  if (shapes.length !== recipe.params.length)
    throw new RangeError(
      `${what}: the saved optimizer has ${recipe.params.length} params but ${shapes.length} variables were given`,
    );
  shapes.forEach((shape, i) => {
    const want = recipe.params[i].shape;
    if (shape.length !== want.length || shape.some((d, k) => d !== want[k]))
      throw new RangeError(
        `${what}: variable ${i} has shape ${shapeText(shape)} but the saved optimizer's param '${recipe.params[i].name}' has ${shapeText(want)}`,
      );
  });
}

/** The builder that rebuilds the recipe's optimizer over params named as the recipe's. */
export function recipeBuilder(recipe: Recipe): (params: Parameter[]) => AnyFusedOptimizer {
  return (params) => {
    const byName = new Map(params.map((p) => [p.name, p]));
    const groups = recipe.paramGroups.map((g) => ({ ...g, params: g.params.map((n) => byName.get(n)!) }));
    const options = { gradClip: recipe.gradClip, lazyMode: recipe.lazyMode };
    if (recipe.algorithm === 'Lion') return new Lion(groups, options) as unknown as AnyFusedOptimizer;
    if (recipe.algorithm === 'AdamW') return new AdamW(groups, options) as unknown as AnyFusedOptimizer;
    const dl = recipe.adamwdl!;
    const rules = new Map(dl.rules.map(([name, ratio, decay]) => [name, { ratio, decay }]));
    const rule = (name: string) => {
      const r = rules.get(name);
      if (!r) throw new Error(`TfjsOptimizer.fromConfig: the recipe has no AdamWDL ratio for param '${name}'`);
      return r;
    };
    return new AdamWDL(groups, {
      ...options,
      layerwiseDecay: dl.layerwiseDecay,
      nLayers: dl.nLayers,
      setParamLrFun: (_decay, name) => rule(name).ratio,
      applyDecayParamFun: (name) => rule(name).decay,
    }) as unknown as AnyFusedOptimizer;
  };
}
