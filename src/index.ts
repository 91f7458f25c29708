export { backendInfo, type BackendInfo } from './backend';
export type { DType, DeviceName } from './dtype';
export { Tensor, type TensorOptions } from './tensor';
export { Parameter, type RowSparseGrad } from './parameter';
export { Optimizer, type ParamGroup, type ParamsInput } from './optimizer';
export { AdamW, type AdamWOptions, type AdamWParamGroup, type AdamWParamState, type AdamWStateDict } from './adamw';
export {
  LRScheduler,
  type LRSchedulerStateDict,
  type SchedulableGroup,
  type SchedulableOptimizer,
  type SchedulerOptions,
  type SchedulerStateDict,
} from './schedulers/lr_scheduler';
export { LambdaLR, type LambdaLRStateDict, type LrLambda } from './schedulers/lambda_lr';
export { TransformerLR, type TransformerLROptions, type TransformerLRStateDict } from './schedulers/transformer_lr';
export {
  LinearLR,
  type LinearLROptions,
  type LinearLRStateDict,
  CosineAnnealingLR,
  type CosineAnnealingLROptions,
  type CosineAnnealingLRStateDict,
} from './schedulers/torch_schedulers';
export { SequentialLR, type SequentialLROptions, type SequentialLRStateDict } from './schedulers/sequential_lr';
export {
  linearWarmup,
  cosineWithWarmup,
  constantWithWarmup,
  inverseSqrtWithWarmup,
  type LinearWarmupOptions,
  type CosineWithWarmupOptions,
  type ConstantWithWarmupOptions,
  type InverseSqrtWithWarmupOptions,
} from './schedulers/warmup';
export { AdamWDL, type AdamWDLOptions, type SetParamLrFun } from './adamwdl';
export { Lion, type LionOptions, type LionParamGroup, type LionParamState, type LionStateDict } from './lion';
export { SGD, type SGDOptions, type SGDParamGroup, type SGDParamState, type SGDStateDict } from './sgd';
export { type MetricsDict, preReduceMetrics, reduceMetrics } from './metrics';
export { noDecayParamGroups, layerwiseParamGroups, type NoDecayOptions, type LayerwiseOptions } from './param_groups';
export { FusedOptimizer, type StateDict, type StateDictOptions, type StateDtypeGroupDict } from './fused_optimizer';
export {
  STATE_DTYPES,
  MIN_QUANTIZED_NUMEL,
  type StateDtype,
  type StateBlockSize,
  type StateBuffers,
  type StateDtypeGroup,
} from './state_dtype';
export { GradScaler, type GradScalerOptions, type GradScalerStateDict } from './grad_scaler';
export { clipGradNorm, clipGradValue, type ClipGradNormOptions } from './clip';
export type { GradClip, FusedOptions } from './fused_optimizer';
export {
  copyBandwidth,
  type CopyBandwidthOptions,
  type CopyBandwidthResult,
  type CopyBandwidthMethod,
} from './bandwidth';
export {
  saveCheckpoint,
  loadCheckpoint,
  CheckpointError,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type BackgroundSave,
  type CheckpointErrorCode,
  type CheckpointIOOptions,
  type SaveCheckpointOptions,
  type SaveOptions,
  type LoadCheckpointOptions,
  type CheckpointOptimizer,
  type Stateful,
} from './checkpoint/checkpoint';
export {
  SafetensorsFile,
  SafetensorsError,
  type SafetensorsErrorCode,
  readSafetensors,
  writeSafetensors,
  MAX_HEADER_BYTES,
  type SafetensorsDType,
  type SafetensorsTensor,
  type SafetensorsTensorInfo,
  type SafetensorsTensorInput,
  type TensorData,
} from './checkpoint/safetensors';
