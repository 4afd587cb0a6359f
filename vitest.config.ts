import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Integration tests start real servers and real CLI processes; e2e tests drive Chromium.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: "tests/globalSetup.ts",
    // Child processes, worker threads and native SQLite are happier in forks than in threads.
    pool: "forks",
  },
});
