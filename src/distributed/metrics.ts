// Optimizer metrics across ranks: each rank's dict (ZeroRedundancyOptimizer.metrics() holds
// its shard's params) pre-reduced, gathered, and reduced into the metrics of the whole, as
// llm-foundry reduces them across workers. With plain data parallelism every rank already
// has every param's metrics (the same on every rank): use them as they are.
import { type MetricsDict, preReduceMetrics, reduceMetrics } from '../metrics';
import { allGatherJson } from './exchange';
import type { ProcessGroup } from './process_group';

export async function allReduceMetrics(group: ProcessGroup, metrics: MetricsDict): Promise<MetricsDict> {
  const all = await allGatherJson(group, preReduceMetrics(metrics), 'allReduceMetrics');
  return reduceMetrics(all as MetricsDict[]);
}
