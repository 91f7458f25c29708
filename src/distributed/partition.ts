// Which rank owns which param in ZeroRedundancyOptimizer: torch's greedy partition
// (ZeroRedundancyOptimizer._partition_parameters). Group by group, params are taken
// largest first (a stable sort: equal sizes keep their order) and each goes to the rank
// with the fewest elements so far (the lowest such rank on a tie); the totals carry over
// from group to group.
import type { Parameter } from '../parameter';

export interface Partition {
  /** owner[g][i]: the rank of groups[g][i]. */
  owner: number[][];
  /** elements[r]: how many param elements rank r owns. */
  elements: number[];
}

export function partitionParams(groups: readonly (readonly Parameter[])[], world: number): Partition {
  const elements = new Array<number>(world).fill(0);
  const owner = groups.map((params) => {
    const ranks = new Array<number>(params.length);
    const bySize = params.map((p, i) => ({ i, numel: p.data.numel })).sort((a, b) => b.numel - a.numel);
    for (const { i, numel } of bySize) {
      let best = 0;
      for (let r = 1; r < world; r++) if (elements[r] < elements[best]) best = r;
      ranks[i] = best;
      elements[best] += numel;
    }
    return ranks;
  });
  return { owner, elements };
}
