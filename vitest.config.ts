import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL server for the run; the PostgreSQL tests make a database each on it.
    globalSetup: ['./test/helpers/pgGlobalSetup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end tests start real child processes and servers; two cores, so few at once.
    maxWorkers: 2,
    reporters: ['default', './test/summaryReporter.ts'],
  },
});
