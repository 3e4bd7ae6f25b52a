// npm test's configuration (vitest run -c test/vitest.config.ts): the timeouts of the real
// tools' tests, and one temporary folder for the whole run.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/temp-root.ts'],
  },
});
