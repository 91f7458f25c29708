// fused-optim/distributed: data-parallel training across processes and machines over MPI.
// docs/distributed.md is the reference.
export { init, type InitOptions } from './init';
export { ProcessGroup, type ReduceOptions, type CallContext } from './process_group';
export type { HostArray, ReduceOp, CollectiveBackend, CollectiveCall, BackendInfo } from './backend';
export {
  allReduceGrads,
  broadcastParams,
  type AllReduceGradsOptions,
  type BroadcastParamsOptions,
} from './data_parallel';
export { DEFAULT_BUCKET_BYTES } from './buckets';
export {
  ZeroRedundancyOptimizer,
  type ZeroOptions,
  type ZeroParamGroup,
  type ShardOptimizer,
  type ShardOptimizerFactory,
} from './zero';
export { partitionParams, type Partition } from './partition';
export { allReduceMetrics } from './metrics';
export {
  saveShardedCheckpoint,
  loadShardedCheckpoint,
  saveConsolidatedCheckpoint,
  SHARDED_CHECKPOINT_FORMAT,
  SHARDED_CHECKPOINT_VERSION,
  type SaveShardedCheckpointOptions,
  type LoadShardedCheckpointOptions,
} from './sharded_checkpoint';
