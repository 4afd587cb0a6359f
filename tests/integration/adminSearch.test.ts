import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, createUserWithKey, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc } from "../helpers/clients";
import { PROTOCOL_VERSION } from "../../worker/protocol/messages";

// The admin's search ignores case on both engines (PostgreSQL's LIKE does not by itself).
describe("admin search", () => {
  let srv: TestServer;
  let admin: Awaited<ReturnType<typeof createUserWithKey>>;

  beforeAll(async () => {
    srv = await startTestServer();
    admin = await createUserWithKey(srv.deps, "root@example.com"); // first account: admin
  });
  afterAll(() => srv?.close());

  it("finds volunteers by id, name or email and jobs by id, kernel or email, in any case", async () => {
    const owner = await createUserWithKey(srv.deps, "alice.owner@example.com");
    const v = await RawVolunteer.connect(srv.url);
    await v.request({ type: "hello", protocol: PROTOCOL_VERSION, ...v.identity, threads: 1, agent: "node", name: "MixedCase-Host" }, "welcome");
    const { id: jobId } = await trpc(srv.url, owner.apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 2, params: { samples: 2_000_000 } });
    const api = trpc(srv.url, admin.apiKey).admin;

    for (const search of ["mixedcase-host", "MIXEDCASE", v.identity.volunteerId.toUpperCase()]) {
      expect((await api.volunteers.query({ search, limit: 10 })).map((r) => r.id), search).toEqual([v.identity.volunteerId]);
    }
    for (const search of ["PI", "Alice.Owner", jobId.toUpperCase()]) {
      expect((await api.jobs.query({ search, limit: 10 })).map((j) => j.id), search).toEqual([jobId]);
    }
    v.close();
  });
});
