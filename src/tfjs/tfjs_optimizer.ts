// TfjsOptimizer: a tfjs optimizer (a tf.Optimizer subclass, so model.compile / model.fit,
// minimize() and applyGradients() take it) whose step is a fused-optim optimizer's. Each
// applyGradients() copies the grads into the fused optimizer's tensors, runs one fused step,
// and copies the updated values back into the tfjs variables (backend_io.ts: how, per tfjs
// backend). docs/tfjs.md is the reference.
import * as tf from '@tensorflow/tfjs-core';
import { defaultDevice } from '../backend';
import { DEVICES, type DeviceName } from '../dtype';
import { LRScheduler } from '../schedulers/lr_scheduler';
import type { Parameter } from '../parameter';
import { type TransferCounts, newTransferCounts } from './backend_io';
import { type AnyFusedOptimizer, Binding, type FusedBuilder, type Slot } from './binding';
import { checkOptions, describe, sameShape, shapeText } from './checks';
import { type Recipe, checkRecipeFits, decodeRecipe, encodeRecipe, recipeBuilder, recipeOf } from './recipe';
import {
  type NamedVariable,
  type ParamNaming,
  type VariablesInput,
  checkNaming,
  checkVariable,
  trainableVariables,
} from './variables';
import { type NamedTensor, decodeWeights, encodeWeights } from './weights';

export interface TfjsOptimizerOptions {
  /** Renames the params (default: each variable's name; a model's weights by originalName). */
  paramName?: ParamNaming;
  /** Where the fused tensors live (default: CUDA when usable, else the CPU, as fused-optim's). */
  device?: DeviceName;
}

/** What model.fit's `callbacks` takes (tfjs-layers' CustomCallbackArgs), for a scheduler. */
export interface SchedulerCallback {
  onBatchEnd?: (batch: number, logs?: unknown) => Promise<void>;
  onEpochEnd?: (epoch: number, logs?: unknown) => Promise<void>;
}

export interface SchedulerCallbackOptions {
  /** Step the scheduler after every batch (default) or every epoch. */
  every?: 'batch' | 'epoch';
}

type GradsInput = { [name: string]: tf.Tensor } | ReadonlyArray<{ name: string; tensor?: tf.Tensor | null }>;

// The constructor's first argument when fromConfig() builds an optimizer still to be bound.
const DEFERRED: unique symbol = Symbol('TfjsOptimizer.deferred');

export class TfjsOptimizer<F extends AnyFusedOptimizer = AnyFusedOptimizer> extends tf.Optimizer {
  /** tfjs's serialization name (model.json's optimizer class_name). */
  static className = 'FusedOptimTfjsOptimizer';

  readonly #device: DeviceName;
  readonly #naming: ParamNaming | undefined;
  #binding: Binding<F> | null = null;
  #builder: FusedBuilder<F>;
  #recipe: Recipe | null = null;
  /** setWeights() before binding: clones, applied by bind(). */
  #pendingWeights: NamedTensor[] | null = null;
  /** What the last getWeights() returned: the optimizer owns it until the next call. */
  #lastWeights: tf.Tensor[] = [];
  #disposed = false;
  /** How many reads and writes took each path (docs/tfjs.md: what a step does). */
  readonly transfers: TransferCounts = newTransferCounts();

  /**
   * @param variables a tfjs model (its trainableWeights) or an array of tf.Variable
   * @param builder makes the fused optimizer over one Parameter per variable, in order
   */
  constructor(variables: VariablesInput, builder: FusedBuilder<F>, options?: TfjsOptimizerOptions) {
    super();
    const where = 'TfjsOptimizer';
    const o = checkOptions(options, `${where}: options`, ['paramName', 'device']);
    this.#naming = checkNaming(o.paramName, `${where}: options.paramName`);
    if (o.device !== undefined && !DEVICES.includes(o.device as DeviceName))
      throw new TypeError(`${where}: options.device must be 'cpu' or 'cuda', got ${describe(o.device)}`);
    this.#device = (o.device as DeviceName | undefined) ?? defaultDevice();
    if (typeof builder !== 'function')
      throw new TypeError(`${where}: builder must be a function (params) => fused optimizer, got ${describe(builder)}`);
    this.#builder = builder;
    if ((variables as unknown) === DEFERRED) return;
    this.#bindNamed(trainableVariables(variables, this.#naming, `${where}: variables`));
  }

  /** The fused optimizer (param groups, lr, metrics(), state dicts): give it to schedulers. */
  get fused(): F {
    return this.#bound('fused').fused;
  }

  /** One Parameter per variable, in the optimizer's variable order. */
  get params(): readonly Parameter[] {
    return this.#bound('params').slots.map((s) => s.param);
  }

  /** The tfjs variables trained, in order. */
  get variables(): readonly tf.Variable[] {
    return this.#bound('variables').slots.map((s) => s.variable);
  }

  /** Steps taken (tfjs's `iterations`). */
  get step(): number {
    return this.iterations;
  }

  /** False for an optimizer rebuilt by fromConfig() (tf.loadLayersModel) until bind() or its first step. */
  get isBound(): boolean {
    return this.#binding !== null;
  }

  /**
   * Binds an optimizer rebuilt by fromConfig() to its variables: the model's trainable
   * weights (or the variables) in order must have the saved params' shapes. Its first
   * applyGradients() does this by itself with the variables it is given.
   */
  bind(variables: VariablesInput): void {
    const where = 'TfjsOptimizer.bind';
    this.#checkAlive(where);
    if (this.#binding) throw new Error(`${where}: the optimizer is already bound to its variables`);
    this.#bindNamed(this.#recipeNames(trainableVariables(variables, undefined, `${where}: variables`), where));
  }

  /**
   * One fused step with these grads (keyed by variable name, or tfjs's [{ name, tensor }]).
   * Variables without a grad are not updated (no decay either), as torch skips params
   * without grad. Everything is checked before anything changes.
   */
  override applyGradients(variableGradients: GradsInput): void {
    const where = 'TfjsOptimizer.applyGradients';
    this.#checkAlive(where);
    const entries = gradEntries(variableGradients, where);
    if (!this.#binding) this.#bindFromGrads(entries, where);
    const binding = this.#binding!;
    const withGrad = checkGrads(binding, entries, where);
    const stepped = new Set<Slot>();
    for (const [slot, grad] of withGrad) {
      binding.syncIn(slot, this.transfers);
      binding.setGrad(slot, grad, this.transfers);
      stepped.add(slot);
    }
    for (const slot of binding.slots) if (!stepped.has(slot)) binding.clearGrad(slot);
    binding.fused.step();
    for (const slot of stepped) binding.writeBack(slot, this.transfers);
    this.incrementIterations();
  }

  /**
   * A model.fit callback that steps `scheduler` (any fused-optim scheduler of `opt.fused`)
   * after every batch, as a custom loop calls sched.step() after opt.step(). tfjs-layers
   * takes it in `callbacks` alone or among other plain objects; next to tfjs callback
   * objects, wrap it: new tf.CustomCallback(opt.schedulerCallback(sched)).
   */
  schedulerCallback(scheduler: { step(): void }, options?: SchedulerCallbackOptions): SchedulerCallback {
    const where = 'TfjsOptimizer.schedulerCallback';
    const o = checkOptions(options, `${where}: options`, ['every']);
    if (scheduler === null || typeof scheduler !== 'object' || typeof scheduler.step !== 'function')
      throw new TypeError(`${where}: scheduler must have a step() method, got ${describe(scheduler)}`);
    if (scheduler instanceof LRScheduler && scheduler.optimizer !== (this.fused as unknown))
      throw new Error(`${where}: the scheduler drives another optimizer; create it on this optimizer's .fused`);
    const every = o.every ?? 'batch';
    if (every !== 'batch' && every !== 'epoch')
      throw new TypeError(`${where}: options.every must be 'batch' or 'epoch', got ${describe(every)}`);
    const step = async () => scheduler.step();
    return every === 'batch' ? { onBatchEnd: step } : { onEpochEnd: step };
  }

  /**
   * Copies into the Parameters the values of variables that were assigned outside this
   * optimizer since its last step (model.setWeights, loadWeights, v.assign). Steps and
   * checkpoints do it by themselves.
   */
  syncFromVariables(): void {
    const binding = this.#bound('syncFromVariables');
    for (const slot of binding.slots) {
      checkVariable(slot.variable, `variable '${slot.variableName}'`);
      binding.syncIn(slot, this.transfers);
    }
  }

  /** @internal after a checkpoint wrote the Parameters: copies every one into its variable. */
  writeAllToVariables(iterations: number | undefined): void {
    const binding = this.#bound('loadCheckpoint');
    for (const slot of binding.slots) binding.writeBack(slot, this.transfers);
    if (iterations !== undefined) this.iterations_ = iterations;
  }

  /**
   * The state as tfjs named tensors (weights.ts describes them), for tfjs's model saving
   * with includeOptimizer. The tensors belong to the optimizer: they stay valid until the
   * next getWeights() or dispose().
   */
  override async getWeights(): Promise<NamedTensor[]> {
    this.#checkAlive('TfjsOptimizer.getWeights');
    tf.dispose(this.#lastWeights);
    const weights = this.#binding
      ? encodeWeights(this.#binding.fused, this.iterations)
      : (this.#pendingWeights ?? []).map((w) => ({ name: w.name, tensor: tf.clone(w.tensor) }));
    this.#lastWeights = weights.map((w) => w.tensor);
    return weights;
  }

  /** Restores what getWeights() gave (checked completely before anything changes). */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const where = 'TfjsOptimizer.setWeights';
    this.#checkAlive(where);
    if (this.#binding) {
      this.#applyWeights(weightValues);
      return;
    }
    if (!Array.isArray(weightValues)) throw new TypeError(`${where}: expected an array of { name, tensor }`);
    // Not bound yet (tf.loadLayersModel loads the state right after fromConfig): keep
    // clones, applied when the variables are known.
    const clones = weightValues.map((w, i) => {
      if (w === null || typeof w !== 'object' || !(w.tensor instanceof tf.Tensor))
        throw new TypeError(`${where}: weights[${i}] must be { name, tensor }, got ${describe(w)}`);
      return { name: String(w.name), tensor: tf.keep(tf.clone(w.tensor)) };
    });
    if (this.#pendingWeights) tf.dispose(this.#pendingWeights.map((w) => w.tensor));
    this.#pendingWeights = clones;
  }

  /** What fromConfig() rebuilds the optimizer from (recipe.ts): tfjs saves it in model.json. */
  override getConfig(): tf.serialization.ConfigDict {
    this.#checkAlive('TfjsOptimizer.getConfig');
    const recipe = this.#binding ? recipeOf(this.#binding.fused, this.params) : this.#recipe!;
    return { recipe: encodeRecipe(recipe) };
  }

  /** Rebuilds an optimizer from getConfig()'s output; it binds to its variables later. */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const recipe = decodeRecipe(config);
    const Ctor = cls as unknown as new (
      v: unknown,
      b: FusedBuilder<AnyFusedOptimizer>,
      o?: TfjsOptimizerOptions,
    ) => TfjsOptimizer;
    const opt = new Ctor(DEFERRED, recipeBuilder(recipe));
    opt.#recipe = recipe;
    return opt as unknown as T;
  }

  /** Frees the fused tensors and the state; the optimizer cannot be used afterwards. */
  override dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    tf.dispose(this.#lastWeights);
    this.#lastWeights = [];
    if (this.#pendingWeights) tf.dispose(this.#pendingWeights.map((w) => w.tensor));
    this.#pendingWeights = null;
    this.#binding?.dispose();
    this.#binding = null;
    super.dispose();
  }

  #checkAlive(where: string): void {
    if (this.#disposed) throw new Error(`${where}: the optimizer has been disposed`);
  }

  #bound(what: string): Binding<F> {
    this.#checkAlive(`TfjsOptimizer.${what}`);
    if (!this.#binding)
      throw new Error(
        `TfjsOptimizer.${what}: this optimizer was restored from a saved model and is not bound to its variables yet; ` +
          'call opt.bind(model) first',
      );
    return this.#binding;
  }

  #bindNamed(named: NamedVariable[]): void {
    this.#binding = new Binding(named, this.#builder, this.#device, this.transfers);
    if (this.#pendingWeights) {
      const pending = this.#pendingWeights;
      try {
        this.#applyWeights(pending);
      } catch (e) {
        this.#binding.dispose();
        this.#binding = null;
        throw e;
      }
      this.#pendingWeights = null;
      tf.dispose(pending.map((w) => w.tensor));
    }
  }

  #applyWeights(weights: NamedTensor[]): void {
    const binding = this.#binding!;
    const { stateDict, iterations } = decodeWeights(binding.fused, weights, this.transfers);
    binding.fused.loadStateDict(stateDict as never);
    this.iterations_ = iterations;
  }

  // fromConfig's optimizer: the variables named in the first applyGradients, in its order.
  #bindFromGrads(entries: Array<[string, tf.Tensor | null | undefined]>, where: string): void {
    const registered = tf.engine().registeredVariables;
    const variables = entries.map(([name]) => {
      const v = registered[name];
      if (!v) throw new Error(`${where}: no variable named '${name}' is registered in tfjs`);
      return v;
    });
    const named = variables.map((v, i) => checkVariable(v, `${where}: variable ${i}`));
    this.#bindNamed(
      this.#recipeNames(
        named.map((variable) => ({ variable, name: variable.name })),
        `${where} (binding an optimizer restored from a saved model; bind(model) binds it explicitly)`,
      ),
    );
  }

  // The recipe's param names for the variables, checked against its shapes.
  #recipeNames(named: NamedVariable[], where: string): NamedVariable[] {
    const recipe = this.#recipe!;
    checkRecipeFits(
      recipe,
      named.map((n) => n.variable.shape),
      where,
    );
    return named.map((n, i) => ({ variable: n.variable, name: recipe.params[i].name }));
  }
}

function gradEntries(grads: unknown, where: string): Array<[string, tf.Tensor | null | undefined]> {
  if (Array.isArray(grads)) {
    return grads.map((g, i) => {
      if (g === null || typeof g !== 'object' || typeof g.name !== 'string')
        throw new TypeError(`${where}: variableGradients[${i}] must be { name, tensor }, got ${describe(g)}`);
      return [g.name, g.tensor];
    });
  }
  if (grads === null || typeof grads !== 'object')
    throw new TypeError(
      `${where}: variableGradients must be an object of grads by variable name, or [{ name, tensor }], got ${describe(grads)}`,
    );
  return Object.entries(grads as Record<string, tf.Tensor | null | undefined>);
}

// Every check of a step, before anything changes: known and live variables, each once, and
// grads that are live float32 tensors of the variable's shape.
function checkGrads(
  binding: Binding<AnyFusedOptimizer>,
  entries: Array<[string, tf.Tensor | null | undefined]>,
  where: string,
): Array<[Slot, tf.Tensor]> {
  const seen = new Set<Slot>();
  const out: Array<[Slot, tf.Tensor]> = [];
  for (const [name, grad] of entries) {
    const slot = binding.slotOf(name);
    if (!slot)
      throw new Error(
        `${where}: a grad for variable '${name}', which is not among the optimizer's ${binding.slots.length} variables`,
      );
    if (seen.has(slot)) throw new Error(`${where}: two grads for variable '${name}'`);
    seen.add(slot);
    if (grad === null || grad === undefined) continue;
    const who = `${where}: the grad of variable '${name}'`;
    if (!(grad instanceof tf.Tensor)) throw new TypeError(`${who} must be a tf.Tensor, got ${describe(grad)}`);
    if (grad.isDisposed) throw new Error(`${who} has been disposed`);
    if (grad.dtype !== 'float32') throw new TypeError(`${who} has dtype ${grad.dtype}; it must be float32`);
    if (!sameShape(grad.shape, slot.param.data.shape))
      throw new RangeError(
        `${who} has shape ${shapeText(grad.shape)} but the variable had shape ${shapeText(slot.param.data.shape)} ` +
          'when the optimizer was created',
      );
    if (slot.variable.isDisposed)
      throw new Error(
        `${where}: variable '${name}' has been disposed (a model rebuilt under the same names needs a new optimizer)`,
      );
    out.push([slot, grad]);
  }
  return out;
}
