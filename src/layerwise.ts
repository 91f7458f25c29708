// Where a parameter sits in a transformer encoder, read from its name: the rule of the
// seed's AdamWDL (and BEiT/timm's layer-wise lr decay).
const LAYER_PATTERN = 'encoder.layers.';

/**
 * The encoder layer index in a name containing "encoder.layers.N", or undefined when the
 * name has no such part. Throws when N is not a non-negative integer.
 */
export function encoderLayerIndex(name: string): number | undefined {
  const at = name.indexOf(LAYER_PATTERN);
  if (at < 0) return undefined;
  const token = name.slice(at + LAYER_PATTERN.length).split('.')[0];
  if (!/^\d+$/.test(token)) {
    throw new RangeError(
      `cannot read the layer index in param name '${name}': expected encoder.layers.<N>, got '${token}'`,
    );
  }
  return Number(token);
}

/** The seed's default set_param_lr_fun: decay^(nLayers - N) in layer N, decay^(nLayers + 1) for embeddings. */
export function defaultLayerwiseRatio(decayRate: number, name: string, nLayers: number): number {
  const layer = encoderLayerIndex(name);
  if (layer !== undefined) {
    if (layer > nLayers) throw new RangeError(`param '${name}' is in encoder layer ${layer} but nLayers is ${nLayers}`);
    return decayRate ** (nLayers - layer);
  }
  if (name.includes('embedding')) return decayRate ** (nLayers + 1);
  return 1;
}
