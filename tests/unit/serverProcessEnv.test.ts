import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SERVER_PROCESS_ENV, serverProcessEnv } from "../../scripts/build-server.mjs";

const pkg = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "../../package.json"), "utf8")) as { scripts: Record<string, string> };

describe("the server process's environment", () => {
  it("is what `npm run serve` starts the server with, unless the caller's environment says otherwise", () => {
    // The bench, the tests and `npm run cluster` start the bundle themselves: they must run the
    // server as `npm start` does, or their figures would not be the ones users get.
    const serve = pkg.scripts.serve;
    expect(Object.keys(SERVER_PROCESS_ENV).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(SERVER_PROCESS_ENV)) expect(serve).toContain(`${k}=\${${k}:-${v}} `);
    expect(serve).toMatch(/ node dist\/server\/index\.mjs$/);
  });

  it("gives way to a value the caller set", () => {
    expect(serverProcessEnv({ PORT: "1" })).toEqual({ ...SERVER_PROCESS_ENV, PORT: "1" });
    expect(serverProcessEnv({ MALLOC_ARENA_MAX: "8" }).MALLOC_ARENA_MAX).toBe("8");
  });
});
