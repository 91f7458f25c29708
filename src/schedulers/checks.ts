// Argument checks shared by the schedulers; each error names the parameter and the problem.
import { checkFiniteNumber } from '../optimizer';

export { checkFiniteNumber };

export function checkInteger(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be an integer, got ${describe(value)}`);
  if (!Number.isSafeInteger(value)) throw new RangeError(`${what} must be an integer, got ${value}`);
  if (value < min) throw new RangeError(`${what} must be >= ${min}, got ${value}`);
  return value;
}

export function checkOptionsObject(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${what} must be an options object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function checkNumberArray(value: unknown, what: string, length: number, min = 0): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of numbers, got ${describe(value)}`);
  if (value.length !== length)
    throw new RangeError(`${what} has ${value.length} entries but ${length} were expected (one per param group)`);
  return value.map((v, i) => checkFiniteNumber(v, `${what}[${i}]`, { min }));
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}
