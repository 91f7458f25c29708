// Optimizer metrics in llm-foundry's shape (DecoupledLionW.report_per_parameter_metrics and
// pre_reduce_metrics), plus reduceMetrics, which sums pre-reduced dicts of several workers
// (or of the shards of one tensor) back into global values.
export type MetricsDict = Record<string, number>;

const NORMS = ['moment', 'param', 'update', 'grad'] as const;
const COSINES = [
  ['update', 'grad'],
  ['moment', 'grad'],
] as const;
// torch.nn.functional.cosine_similarity's eps: dot / sqrt(max(|a|^2 |b|^2, eps^2)).
const COSINE_EPS = 1e-8;

function cosine(dot: number, aSq: number, bSq: number): number {
  return dot / Math.sqrt(Math.max(aSq * bSq, COSINE_EPS * COSINE_EPS));
}

/** sums: moment_sq, param_sq, update_sq, grad_sq, update_dot_grad, moment_dot_grad. */
export function metricsFromSums(name: string, sums: ArrayLike<number>): MetricsDict {
  const sq = { moment: sums[0], param: sums[1], update: sums[2], grad: sums[3] };
  const dots = { update_grad: sums[4], moment_grad: sums[5] };
  const out: MetricsDict = {};
  for (const n of NORMS) out[`l2_norm/${n}/${name}`] = Math.sqrt(sq[n]);
  for (const [a, b] of COSINES) out[`cosine/${a}_${b}/${name}`] = cosine(dots[`${a}_${b}`], sq[a], sq[b]);
  return out;
}

function splitKey(key: string): { metric: string; layer: string } {
  const parts = key.split('/');
  if (parts.length < 3 || (parts[0] !== 'l2_norm' && parts[0] !== 'cosine')) {
    throw new RangeError(
      `metric key ${JSON.stringify(key)} is not of the form 'l2_norm/<what>/<name>' or 'cosine/<a>_<b>/<name>'`,
    );
  }
  return { metric: `${parts[0]}/${parts[1]}`, layer: parts.slice(2).join('/') };
}

/**
 * As the seed's pre_reduce_metrics: norms squared, cosines multiplied by the norms of their
 * two vectors, so that summing the dicts of several workers and then calling reduceMetrics
 * gives the metrics of the whole.
 */
export function preReduceMetrics(metrics: MetricsDict): MetricsDict {
  const out: MetricsDict = {};
  for (const [key, value] of Object.entries(metrics)) {
    const { metric, layer } = splitKey(key);
    if (metric.startsWith('l2_norm/')) {
      out[key] = value * value;
    } else {
      const [a, b] = metric.slice('cosine/'.length).split('_');
      const normA = metrics[`l2_norm/${a}/${layer}`];
      const normB = metrics[`l2_norm/${b}/${layer}`];
      if (normA === undefined || normB === undefined)
        throw new RangeError(`preReduceMetrics: ${key} needs l2_norm/${a}/${layer} and l2_norm/${b}/${layer}`);
      out[key] = value * normA * normB;
    }
  }
  return out;
}

/** Sums pre-reduced dicts (e.g. one per worker) and turns the sums back into metrics. */
export function reduceMetrics(preReduced: readonly MetricsDict[]): MetricsDict {
  const sum: MetricsDict = {};
  for (const d of preReduced) for (const [k, v] of Object.entries(d)) sum[k] = (sum[k] ?? 0) + v;
  const out: MetricsDict = {};
  for (const [key, value] of Object.entries(sum)) {
    const { metric, layer } = splitKey(key);
    if (metric.startsWith('l2_norm/')) {
      out[key] = Math.sqrt(value);
    } else {
      const [a, b] = metric.slice('cosine/'.length).split('_');
      const aSq = sum[`l2_norm/${a}/${layer}`];
      const bSq = sum[`l2_norm/${b}/${layer}`];
      if (aSq === undefined || bSq === undefined)
        throw new RangeError(`reduceMetrics: ${key} needs l2_norm/${a}/${layer} and l2_norm/${b}/${layer}`);
      out[key] = cosine(value, aSq, bSq);
    }
  }
  return out;
}
