// fused-optim/tfjs: fused-optim's optimizers, schedulers and checkpoints for TensorFlow.js
// models. Loads @tensorflow/tfjs-core (a peer dependency: the copy of the user's project);
// the main entry, fused-optim, never does. docs/tfjs.md is the reference.
import { serialization } from '@tensorflow/tfjs-core';
import { TfjsOptimizer } from './tfjs_optimizer';

// So that tf.loadLayersModel() can rebuild a model saved with this optimizer.
serialization.registerClass(TfjsOptimizer);

export {
  TfjsOptimizer,
  type TfjsOptimizerOptions,
  type SchedulerCallback,
  type SchedulerCallbackOptions,
} from './tfjs_optimizer';
export type { AnyFusedOptimizer, FusedBuilder } from './binding';
export type { TransferCounts } from './backend_io';
export type { LayerVariableLike, ModelLike, ParamNaming, VariablesInput } from './variables';
export type { NamedTensor } from './weights';
export {
  saveCheckpoint,
  loadCheckpoint,
  type TfjsSaveCheckpointOptions,
  type TfjsLoadCheckpointOptions,
} from './checkpoint';
