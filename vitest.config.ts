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
    // Servers the tests start as processes inherit these: no shedding on a CPU-starved test
    // machine, nor a limit on calls in progress, except where a test turns them on
    // (tests/integration/loadGate.test.ts).
    env: { LOAD_SHED_DELAY_MS: "0", LOAD_SHED_MAX_REQUESTS: "0" },
  },
});
