// AdamWDL: AdamW with layer-wise learning-rate decay, as PaddleNLP's AdamWDL. Its order of
// operations: the decoupled weight decay uses the group's BASE lr (p *= 1 - lr * wd), then
// the Adam step uses lr * ratio, where ratio depends on the param's layer. The more common
// convention (BEiT, timm) scales the decay too; layerwiseParamGroups() builds ordinary
// AdamW groups that way. The ratios are computed once per param and travel to the kernel
// as per-tensor multipliers: still one launch per step.
import { ADAMW_OPTION_KEYS, AdamW, type AdamWOptions, type AdamWParamGroup } from './adamw';
import { defaultLayerwiseRatio } from './layerwise';
import type { NativeParamOptions } from './native';
import { checkFunction, checkInteger, checkNumber, checkOptions, mustBe } from './checks';
import type { ParamsInput } from './optimizer';
import type { Parameter } from './parameter';

export type SetParamLrFun = (decayRate: number, name: string, nLayers: number) => number;

export interface AdamWDLOptions extends AdamWOptions {
  /** Decay rate per layer (default 1: no decay). */
  layerwiseDecay?: number;
  /** Number of encoder layers (default 12). */
  nLayers?: number;
  /** The ratio of a param's lr to the group's lr (default: the encoder.layers.N / embedding rule). */
  setParamLrFun?: SetParamLrFun;
  /** The name the rules read, per param (default p.name). */
  nameDict?: Map<Parameter, string> | Record<string, string>;
  /** Which params get weight decay, by name (default: all). */
  applyDecayParamFun?: (name: string) => boolean;
}

const ADAMWDL_KEYS = ['layerwiseDecay', 'nLayers', 'setParamLrFun', 'nameDict', 'applyDecayParamFun'];

export class AdamWDL extends AdamW {
  protected override readonly optimizerName: string = 'AdamWDL';
  readonly layerwiseDecay: number;
  readonly nLayers: number;
  readonly #setParamLrFun: SetParamLrFun;
  readonly #nameDict: AdamWDLOptions['nameDict'];
  readonly #applyDecayParamFun: ((name: string) => boolean) | undefined;

  constructor(params: ParamsInput<AdamWParamGroup>, options: AdamWDLOptions = {}) {
    const where = `${new.target.name} options`;
    const all = checkOptions(options, where, [...ADAMW_OPTION_KEYS, ...ADAMWDL_KEYS]) as AdamWDLOptions;
    const { layerwiseDecay: decay, nLayers: layers, setParamLrFun, nameDict, applyDecayParamFun, ...adamw } = all;
    const layerwiseDecay = checkNumber(decay ?? 1, `${where}: layerwiseDecay`, { min: 0 });
    const nLayers = checkInteger(layers ?? 12, `${where}: nLayers`, { min: 0 });
    if (setParamLrFun !== undefined) checkFunction(setParamLrFun, `${where}: setParamLrFun`);
    if (applyDecayParamFun !== undefined) checkFunction(applyDecayParamFun, `${where}: applyDecayParamFun`);
    const nd = nameDict;
    if (
      nd !== undefined &&
      !(nd instanceof Map) &&
      (nd === null || typeof nd !== 'object' || Object.getPrototypeOf(nd) !== Object.prototype)
    ) {
      throw new TypeError(mustBe(`${where}: nameDict`, 'a Map<Parameter, string> or a plain object', nd));
    }
    // Params are registered (and their ratios computed) inside super(): the options must be
    // readable by then, so they go through a static slot rather than instance fields.
    AdamWDL.#pending = {
      layerwiseDecay,
      nLayers,
      setParamLrFun: setParamLrFun ?? defaultLayerwiseRatio,
      nameDict,
      applyDecayParamFun,
    };
    try {
      super(params, adamw);
    } finally {
      AdamWDL.#pending = undefined;
    }
    this.layerwiseDecay = layerwiseDecay;
    this.nLayers = nLayers;
    this.#setParamLrFun = setParamLrFun ?? defaultLayerwiseRatio;
    this.#nameDict = nameDict;
    this.#applyDecayParamFun = applyDecayParamFun;
  }

  static #pending:
    | {
        layerwiseDecay: number;
        nLayers: number;
        setParamLrFun: SetParamLrFun;
        nameDict: AdamWDLOptions['nameDict'];
        applyDecayParamFun?: (name: string) => boolean;
      }
    | undefined;

  /** The lr multiplier and decay switch of each param, by param name (for inspection). */
  get ratios(): Map<string, { ratio: number; applyDecay: boolean }> {
    return new Map(this.params.map((p) => [p.name, this.rule(p)]));
  }

  protected override checkParams(params: Parameter[]): void {
    for (const p of params) this.rule(p);
  }

  protected override groupOptions(params: readonly Parameter[], groupIndex: number): NativeParamOptions {
    const rules = params.map((p) => this.rule(p));
    return {
      ...super.groupOptions(params, groupIndex),
      lrRatios: Float64Array.from(rules, (r) => r.ratio),
      applyDecay: Uint8Array.from(rules, (r) => (r.applyDecay ? 1 : 0)),
    };
  }

  private rule(p: Parameter): { ratio: number; applyDecay: boolean } {
    const o = AdamWDL.#pending ?? {
      layerwiseDecay: this.layerwiseDecay,
      nLayers: this.nLayers,
      setParamLrFun: this.#setParamLrFun,
      nameDict: this.#nameDict,
      applyDecayParamFun: this.#applyDecayParamFun,
    };
    const dict = o.nameDict;
    const name = (dict instanceof Map ? dict.get(p) : dict?.[p.name]) ?? p.name;
    if (typeof name !== 'string')
      throw new TypeError(`AdamWDL: nameDict maps param '${p.name}' to ${String(name)}; names must be strings`);
    const ratio = o.setParamLrFun(o.layerwiseDecay, name, o.nLayers);
    if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0) {
      throw new RangeError(
        `AdamWDL: setParamLrFun returned ${String(ratio)} for param '${name}'; the lr ratio must be a finite number >= 0`,
      );
    }
    const applyDecay = o.applyDecayParamFun ? o.applyDecayParamFun(name) : true;
    if (typeof applyDecay !== 'boolean')
      throw new TypeError(`AdamWDL: applyDecayParamFun must return a boolean for param '${name}'`);
    return { ratio, applyDecay };
  }
}
