declare module 'node-gyp-build' {
  /** Loads the addon from prebuilds/ or build/ under `root`. */
  function load(root: string): unknown;
  export default load;
}
