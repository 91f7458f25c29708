// Argument checks of the TensorFlow.js adapter: each error names the argument and the problem.
import { describe } from '../schedulers/checks';

export { describe };

/** An options object (undefined: {}) whose keys are all among `allowed`. */
export function checkOptions(value: unknown, allowed: readonly string[], what: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new TypeError(`${what} must be an options object, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key))
      throw new TypeError(`${what}: unknown option '${key}' (known: ${allowed.join(', ') || 'none'})`);
  }
  return value as Record<string, unknown>;
}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
