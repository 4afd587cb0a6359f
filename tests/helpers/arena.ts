import { afterAll, beforeAll } from "vitest";
import { RawVolunteer } from "./clients";
import { startTestServer, type TestServer } from "./server";

/**
 * For one describe block: a test server of its own (with `env`), and raw volunteer sockets on
 * it (`open`: connected, said hello, welcomed), every one closed after the block.
 */
export function rawArena(env: Record<string, string> = {}) {
  let srv: TestServer | undefined;
  const sockets: RawVolunteer[] = [];
  beforeAll(async () => {
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    for (const s of sockets) await s.close().catch(() => undefined);
    await srv?.close();
  });
  return {
    get srv(): TestServer {
      if (!srv) throw new Error("the arena's server is not started yet (use it inside a test)");
      return srv;
    },
    async open(threads: number, opts: { identity?: RawVolunteer["identity"] } = {}) {
      const v = await RawVolunteer.welcomed(this.srv.url, threads, opts);
      sockets.push(v);
      return v;
    },
  };
}
