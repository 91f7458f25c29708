// Argument checks of the TensorFlow.js adapter: each error names the argument and the problem.
import { checkOptions, describe } from '../checks';

export { checkOptions, describe };

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
