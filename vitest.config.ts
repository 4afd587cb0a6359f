import { defineConfig } from "vitest/config";

// Files that measure speed or react to the machine's load (the bench and stress runs, the load
// gate's shedding decisions) run alone, after the others: beside another file they would
// measure that file's load.
const alone = ["tests/integration/bench.short.test.ts", "tests/integration/stress.short.test.ts", "tests/integration/loadGate.test.ts"];

export default defineConfig({
  test: {
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
    projects: [
      {
        extends: true,
        // Two files at a time, even on two cores: most of a file's time is spent waiting (on
        // processes starting, Chromium, sockets, timers), so the suite takes ~12 minutes
        // instead of ~17 on this project's 2-core machines.
        test: { name: "shared", include: ["tests/**/*.test.ts"], exclude: alone, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: "alone", include: alone, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
