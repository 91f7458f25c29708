// Checkpoints of a tfjs model trained by a TfjsOptimizer: fused-optim's checkpoint format
// (docs/checkpoints.md: one safetensors file, atomic, checksummed, checked completely before
// anything changes) holding the optimizer's params, the model's other weights (BatchNorm
// statistics, frozen layers: tfjs variables the optimizer does not train), the fused
// optimizer's state, the scheduler's, tfjs's step count and the caller's `extra`.
import * as tf from '@tensorflow/tfjs-core';
import {
  type Stateful,
  loadCheckpoint as loadCoreCheckpoint,
  saveCheckpoint as saveCoreCheckpoint,
} from '../checkpoint/checkpoint';
import { Parameter } from '../parameter';
import { Tensor } from '../tensor';
import { newTransferCounts, readValues, writeValues } from './backend_io';
import { checkOptions, describe } from './checks';
import { TfjsOptimizer } from './tfjs_optimizer';
import { type ModelLike, isModelLike, modelVariables } from './variables';

/** The key of `extra` in the file under which this module keeps its own part. */
export const TFJS_EXTRA_KEY = 'fused_optim.tfjs';

export interface TfjsSaveCheckpointOptions {
  optimizer: TfjsOptimizer;
  /** Save every weight of the model: those the optimizer does not train too, by originalName. */
  model?: ModelLike;
  scheduler?: Stateful;
  scaler?: Stateful;
  /** Anything JSON-like (typed arrays become tensors); loadCheckpoint returns it. */
  extra?: unknown;
}

export interface TfjsLoadCheckpointOptions {
  optimizer: TfjsOptimizer;
  model?: ModelLike;
  scheduler?: Stateful;
  scaler?: Stateful;
  /** As fused-optim's loadCheckpoint: false lets the file and the weights differ (default true). */
  strict?: boolean;
}

interface Extras {
  params: Parameter[];
  variables: tf.Variable[];
}

// The model's weights that are not the optimizer's, as temporary CPU Parameters holding
// their current values.
function modelExtras(model: ModelLike | undefined, optimizer: TfjsOptimizer, op: string): Extras {
  const out: Extras = { params: [], variables: [] };
  if (model === undefined) return out;
  if (!isModelLike(model) || !Array.isArray(model.weights))
    throw new TypeError(`${op}: model must be a tfjs model (with weights), got ${describe(model)}`);
  const trained = new Set(optimizer.variables);
  const counts = newTransferCounts();
  for (const { variable, defaultName } of modelVariables(model, 'all', `${op}: model`)) {
    if (trained.has(variable)) continue;
    const data = Tensor.from(readValues(variable, counts), { shape: variable.shape, device: 'cpu' });
    out.params.push(new Parameter(data, { name: defaultName }));
    out.variables.push(variable);
  }
  return out;
}

function checkOptimizer(optimizer: unknown, op: string): TfjsOptimizer {
  if (!(optimizer instanceof TfjsOptimizer))
    throw new TypeError(`${op}: optimizer must be a TfjsOptimizer, got ${describe(optimizer)}`);
  return optimizer;
}

/** Saves the model's weights, the optimizer, the scheduler and `extra` in one file, atomically. */
export async function saveCheckpoint(file: string, options: TfjsSaveCheckpointOptions): Promise<void> {
  const op = 'saveCheckpoint';
  const o = checkOptions(options, `${op}: options`, ['optimizer', 'model', 'scheduler', 'scaler', 'extra']);
  const optimizer = checkOptimizer(o.optimizer, op);
  optimizer.syncFromVariables();
  const extras = modelExtras(o.model as ModelLike | undefined, optimizer, op);
  try {
    await saveCoreCheckpoint(file, {
      params: [...optimizer.params, ...extras.params],
      optimizer: optimizer.fused,
      scheduler: o.scheduler as Stateful | undefined,
      scaler: o.scaler as Stateful | undefined,
      extra: {
        [TFJS_EXTRA_KEY]: { iterations: optimizer.iterations },
        ...(o.extra === undefined ? {} : { extra: o.extra }),
      },
    });
  } finally {
    for (const p of extras.params) p.data.dispose();
  }
}

/**
 * Restores what saveCheckpoint() saved into the model's variables, the optimizer and the
 * scheduler, and returns the `extra` saved. Nothing changes unless everything fits.
 */
export async function loadCheckpoint(file: string, options: TfjsLoadCheckpointOptions): Promise<unknown> {
  const op = 'loadCheckpoint';
  const o = checkOptions(options, `${op}: options`, ['optimizer', 'model', 'scheduler', 'scaler', 'strict']);
  const optimizer = checkOptimizer(o.optimizer, op);
  optimizer.syncFromVariables();
  const extras = modelExtras(o.model as ModelLike | undefined, optimizer, op);
  try {
    const saved = await loadCoreCheckpoint(file, {
      params: [...optimizer.params, ...extras.params],
      optimizer: optimizer.fused,
      scheduler: o.scheduler as Stateful | undefined,
      scaler: o.scaler as Stateful | undefined,
      strict: o.strict as boolean | undefined,
    });
    const ours = ownPart(saved);
    const counts = newTransferCounts();
    extras.params.forEach((p, i) => writeValues(extras.variables[i], p.data, counts));
    optimizer.writeAllToVariables(ours?.iterations);
    return ours ? (saved as { extra?: unknown }).extra : saved;
  } finally {
    for (const p of extras.params) p.data.dispose();
  }
}

// This module's part of a file's extra, when the file was written by it.
function ownPart(saved: unknown): { iterations: number } | undefined {
  if (saved === null || typeof saved !== 'object') return undefined;
  const part = (saved as Record<string, unknown>)[TFJS_EXTRA_KEY] as { iterations?: unknown } | undefined;
  if (!part || !Number.isSafeInteger(part.iterations)) return undefined;
  return { iterations: part.iterations as number };
}
