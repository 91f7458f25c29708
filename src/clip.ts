// torch.nn.utils.clip_grad_norm_ / clip_grad_value_ over the grads of a list of params:
// one fused reduction for the norm (float64, fixed order: the same result for any thread
// count), then an in-place scale.
import { native } from './native';
import { checkBoolean, checkNumber, checkOptions, mustBe } from './checks';
import { Parameter } from './parameter';

function gradsOf(params: Iterable<Parameter>, where: string) {
  if (
    params === null ||
    typeof params !== 'object' ||
    typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
  ) {
    throw new TypeError(mustBe(`${where}: params`, 'an array of Parameters', params));
  }
  const list = [...params];
  list.forEach((p, i) => {
    if (!(p instanceof Parameter)) throw new TypeError(mustBe(`${where}: params[${i}]`, 'a Parameter', p));
  });
  const grads = list.flatMap((p) => {
    const g = p.grad ?? p.sparseGrad?.values;
    return g ? [g] : [];
  });
  grads.forEach((g) => g.checkAlive(`${where}: a grad`));
  return grads;
}

export interface ClipGradNormOptions {
  /** 2 (default), any p > 0, or Infinity. */
  normType?: number;
  /** Throw (changing nothing) when the total norm is inf or NaN (default false, as torch). */
  errorIfNonfinite?: boolean;
}

/**
 * Scales the grads so their total norm is at most maxNorm (coef = min(maxNorm / (norm +
 * 1e-6), 1), in fp32 as torch) and returns the total norm before clipping.
 */
export function clipGradNorm(params: Iterable<Parameter>, maxNorm: number, options: ClipGradNormOptions = {}): number {
  const grads = gradsOf(params, 'clipGradNorm');
  checkNumber(maxNorm, 'clipGradNorm: maxNorm', { min: 0 });
  const o = checkOptions(options, 'clipGradNorm: options', ['normType', 'errorIfNonfinite']) as ClipGradNormOptions;
  const normType = o.normType ?? 2;
  if (typeof normType !== 'number') throw new TypeError(mustBe('clipGradNorm: normType', 'a number', normType));
  if (Number.isNaN(normType) || normType <= 0)
    throw new RangeError(mustBe('clipGradNorm: normType', 'a number > 0 or Infinity', normType));
  const errorIfNonfinite = checkBoolean(o.errorIfNonfinite ?? false, 'clipGradNorm: options.errorIfNonfinite');
  if (grads.length === 0) return 0;
  const handles = grads.map((g) => g.handle);
  const sums = native().gradNormSums(handles, normType);
  let total: number;
  if (normType === Infinity) total = Math.max(...sums);
  else total = sums.reduce((a, b) => a + b, 0) ** (1 / normType);
  if (sums.some((x) => Number.isNaN(x))) total = NaN;
  total = Math.fround(total);
  if (errorIfNonfinite && !Number.isFinite(total)) {
    throw new RangeError(`clipGradNorm: the total norm of order ${normType} is ${total}; grads were left unchanged`);
  }
  // torch: max_norm / (total_norm + 1e-6) on a float32 tensor, then clamp(max=1).
  const coef = Math.fround(Math.fround(1 / Math.fround(total + Math.fround(1e-6))) * Math.fround(maxNorm));
  // NaN (a NaN norm) scales too, so the grads become NaN as torch's do.
  if (!(coef >= 1)) native().scaleGrads(handles, coef);
  return total;
}

/** Clamps every grad element to [-value, value] in place. */
export function clipGradValue(params: Iterable<Parameter>, value: number): void {
  const grads = gradsOf(params, 'clipGradValue');
  checkNumber(value, 'clipGradValue: value', { min: 0 });
  if (grads.length)
    native().clampGrads(
      grads.map((g) => g.handle),
      -value,
      value,
    );
}
