import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 600_000,
    // The addon's thread pool already uses every core; run files one after another.
    fileParallelism: false,
  },
});
