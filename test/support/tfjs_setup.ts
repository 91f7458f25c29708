// What the TensorFlow.js adapter's tests share: the tfjs backends installed here (the
// pure-JavaScript CPU backend of @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm), small
// models with seeded weights, seeded data, and snapshots of variables.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { randn, rng } from './random';

export const BACKENDS = ['cpu', 'wasm'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** Selects a tfjs backend, in production mode (as the benchmark; no "install tfjs-node" banner). */
export async function useBackend(name: BackendName): Promise<typeof tf> {
  tf.enableProdMode();
  if (!(await tf.setBackend(name))) throw new Error(`tfjs backend ${name} did not start`);
  await tf.ready();
  return tf;
}

export interface MlpSpec {
  inputs: number;
  hidden: number[];
  outputs: number;
  /** Layer names get this prefix (explicit names: a second model gets the same ones). */
  prefix: string;
  batchNorm?: boolean;
}

/** A Sequential MLP with explicit layer names and weights drawn from `seed`. */
export function mlp(spec: MlpSpec, seed: number): tf.Sequential {
  const layers: tf.layers.Layer[] = [];
  let width = spec.inputs;
  spec.hidden.forEach((units, i) => {
    layers.push(
      tf.layers.dense({
        units,
        activation: 'tanh',
        name: `${spec.prefix}_dense${i}`,
        ...(i === 0 ? { inputShape: [width] } : {}),
      }),
    );
    if (spec.batchNorm && i === 0) layers.push(tf.layers.batchNormalization({ name: `${spec.prefix}_bn${i}` }));
    width = units;
  });
  layers.push(
    tf.layers.dense({
      units: spec.outputs,
      name: `${spec.prefix}_out`,
      ...(layers.length === 0 ? { inputShape: [width] } : {}),
    }),
  );
  const model = tf.sequential({ layers });
  seedWeights(model, seed);
  return model;
}

/** Overwrites every weight of the model with seeded values (BatchNorm variances stay positive). */
export function seedWeights(model: tf.LayersModel, seed: number): void {
  const next = rng(seed);
  const values = model.weights.map((w) => {
    const shape = w.read().shape;
    const v = randn(
      shape.reduce((a, b) => a * b, 1),
      next,
      0.5,
    );
    if (w.originalName.endsWith('moving_variance')) for (let i = 0; i < v.length; i++) v[i] = 1 + Math.abs(v[i]);
    return tf.tensor(v, shape);
  });
  model.setWeights(values);
  tf.dispose(values);
}

/** Seeded inputs [n, inputs] and a smooth target [n, outputs]. */
export function regressionData(
  n: number,
  inputs: number,
  outputs: number,
  seed: number,
): { x: tf.Tensor; y: tf.Tensor } {
  const next = rng(seed);
  const xs = randn(n * inputs, next);
  const ys = new Float32Array(n * outputs);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outputs; o++) {
      let s = 0;
      for (let i = 0; i < inputs; i++) s += Math.sin(xs[r * inputs + i] * (1 + ((i + o) % 3)));
      ys[r * outputs + o] = s / inputs;
    }
  return { x: tf.tensor(xs, [n, inputs]), y: tf.tensor(ys, [n, outputs]) };
}

/** Copies of every variable's values (dataSync would alias the CPU backend's arrays). */
export function snapshot(variables: readonly tf.Variable[] | tf.LayersModel): Float32Array[] {
  const list = Array.isArray(variables) ? variables : (variables as tf.LayersModel).weights.map((w) => w.read());
  return list.map((v) => Float32Array.from(v.dataSync() as Float32Array));
}

/** The mean squared error of a model on (x, y), a number. */
export function mseLoss(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  return tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar;
}
