// Which tfjs variables an optimizer trains, and the names of their fused-optim Parameters.
// A model (anything with tfjs-layers' `trainableWeights`) gives its trainable weights in
// layer order, named by their `originalName` ('dense_Dense1/kernel': the name tfjs's own
// model saving uses, without the suffix tfjs adds when a name is taken); plain variables
// keep their order and are named by `variable.name`. A `paramName` option renames them.
import * as tf from '@tensorflow/tfjs-core';
import { describe, shapeText } from './checks';

/** A tfjs-layers LayerVariable, structurally (this package does not load tfjs-layers). */
export interface LayerVariableLike {
  readonly name: string;
  readonly originalName?: string;
  read(): tf.Tensor;
}

/** A tfjs-layers LayersModel or Layer, structurally: its weights. */
export interface ModelLike {
  readonly trainableWeights: readonly LayerVariableLike[];
  /** Every weight, trainable or not (checkpoints save them all). */
  readonly weights?: readonly LayerVariableLike[];
}

export type VariablesInput = ModelLike | readonly tf.Variable[];

/**
 * Renames params: a function of the default name (and the variable), or a table from default
 * names to names (names it lacks are kept). E.g. to AdamWDL's `encoder.layers.N` names.
 */
export type ParamNaming =
  ((defaultName: string, variable: tf.Variable, index: number) => string) | Readonly<Record<string, string>>;

export interface NamedVariable {
  variable: tf.Variable;
  /** The param's name (after `paramName`). */
  name: string;
}

export function isModelLike(input: unknown): input is ModelLike {
  return (
    input !== null &&
    typeof input === 'object' &&
    !Array.isArray(input) &&
    Array.isArray((input as { trainableWeights?: unknown }).trainableWeights)
  );
}

/** A float32 tfjs Variable that is alive, or a TypeError naming `what`. */
export function checkVariable(v: unknown, what: string): tf.Variable {
  if (!(v instanceof tf.Variable)) throw new TypeError(`${what} must be a tf.Variable, got ${describe(v)}`);
  if (v.isDisposed) throw new Error(`${what} ('${v.name}') has been disposed`);
  if (v.dtype !== 'float32')
    throw new TypeError(`${what} ('${v.name}') has dtype ${v.dtype}; only float32 variables can be trained`);
  return v;
}

function weightVariable(w: LayerVariableLike, what: string): { variable: tf.Variable; defaultName: string } {
  if (w === null || typeof w !== 'object' || typeof w.read !== 'function')
    throw new TypeError(`${what} must be a LayerVariable (with read()), got ${describe(w)}`);
  const variable = checkVariable(w.read(), `${what}.read()`);
  const defaultName = typeof w.originalName === 'string' && w.originalName !== '' ? w.originalName : variable.name;
  return { variable, defaultName };
}

/** A model's weights (trainable or all) as variables with their default names. */
export function modelVariables(
  model: ModelLike,
  which: 'trainable' | 'all',
  what: string,
): Array<{ variable: tf.Variable; defaultName: string }> {
  const list = which === 'trainable' ? model.trainableWeights : model.weights;
  if (!Array.isArray(list)) throw new TypeError(`${what}: the model has no weights list`);
  return list.map((w, i) =>
    weightVariable(w, `${what}.${which === 'trainable' ? 'trainableWeights' : 'weights'}[${i}]`),
  );
}

function rename(naming: ParamNaming | undefined, defaultName: string, variable: tf.Variable, index: number): string {
  if (naming === undefined) return defaultName;
  const name =
    typeof naming === 'function' ? naming(defaultName, variable, index) : (naming[defaultName] ?? defaultName);
  if (typeof name !== 'string' || name === '')
    throw new TypeError(
      `paramName gave ${describe(name)} for variable '${variable.name}'; param names must be non-empty strings`,
    );
  return name;
}

export function checkNaming(naming: unknown, what: string): ParamNaming | undefined {
  if (naming === undefined || typeof naming === 'function') return naming as ParamNaming | undefined;
  if (naming === null || typeof naming !== 'object' || Array.isArray(naming))
    throw new TypeError(`${what} must be a function or an object mapping names to names, got ${describe(naming)}`);
  for (const [k, v] of Object.entries(naming)) {
    if (typeof v !== 'string' || v === '')
      throw new TypeError(`${what}['${k}'] must be a non-empty string, got ${describe(v)}`);
  }
  return naming as ParamNaming;
}

/**
 * The trainable variables of `input` with their param names, in a stable order (the model's
 * layer order, or the array's). Throws, naming the problem, on an empty list, a variable
 * that is not a live float32 tf.Variable, the same variable twice or two equal names.
 */
export function trainableVariables(input: unknown, naming: ParamNaming | undefined, what: string): NamedVariable[] {
  let found: Array<{ variable: tf.Variable; defaultName: string }>;
  if (Array.isArray(input)) {
    found = input.map((v, i) => {
      const variable = checkVariable(v, `${what}[${i}]`);
      return { variable, defaultName: variable.name };
    });
    if (found.length === 0) throw new RangeError(`${what} is an empty array of variables`);
  } else if (isModelLike(input)) {
    found = modelVariables(input, 'trainable', what);
    if (found.length === 0)
      throw new RangeError(
        `${what} has no trainable weights (a model must be built first, e.g. with an inputShape on its first layer, ` +
          'and have layers with trainable: true)',
      );
  } else {
    throw new TypeError(`${what} must be a tfjs model (with trainableWeights) or an array of tf.Variable`);
  }
  const byVariable = new Map<tf.Variable, number>();
  const byName = new Map<string, number>();
  return found.map(({ variable, defaultName }, i) => {
    const again = byVariable.get(variable);
    if (again !== undefined)
      throw new Error(`${what}: variable '${variable.name}' is listed twice (at ${again} and ${i})`);
    byVariable.set(variable, i);
    const name = rename(naming, defaultName, variable, i);
    const other = byName.get(name);
    if (other !== undefined)
      throw new Error(
        `${what}: two variables get the param name '${name}' ('${found[other].variable.name}' and '${variable.name}'); ` +
          'param names must be unique (use the paramName option)',
      );
    byName.set(name, i);
    return { variable, name };
  });
}

export function describeVariable(v: tf.Variable): string {
  return `'${v.name}' ${shapeText(v.shape)}`;
}
