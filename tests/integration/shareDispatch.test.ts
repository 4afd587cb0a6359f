import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// A robust merge gives no host more of a job's units than it outvotes while another host has
// fewer (JobSpec.maxUnitsPerHost). Dispatch visits volunteers one by one, so the first ones
// visited were refused their second unit while the others still had none: every volunteer
// then held one unit and its prefetch slot stayed empty for the whole round. Once the others
// have theirs, the first ones must be served again.
describe("a job under a share per host", () => {
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  const volunteers: RawVolunteer[] = [];

  beforeAll(async () => {
    // No ringers (known-answer tasks): they would take the second place of a new volunteer's window.
    srv = await startTestServer({ SPOT_CHECKS: "off" });
    user = await createUserWithKey(srv.deps, "owner@example.com");
    for (let i = 0; i < 3; i++) {
      const v = await RawVolunteer.connect(srv.url);
      v.hello(1); // one thread: a window of two tasks
      await v.next("welcome");
      volunteers.push(v);
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.close()));
    await srv?.close();
  });

  it("fills every volunteer's window at once, one unit beyond the others at a time", async () => {
    const res = await fetch(`${srv.url}/api/programs?name=grad.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: "export function run(x) { return [x, 1]; }",
    });
    expect(res.status).toBe(201);
    const { hash } = (await res.json()) as { hash: string };
    // Eight units merged by a trimmed mean that drops one at each end: one unit a host while others have fewer.
    const { id } = await trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program: hash, input: { mode: "json", items: [1, 2, 3, 4, 5, 6, 7, 8] }, merge: "trimmed-mean",
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    const held = () => volunteers.map((v) => v.tasks().filter((t) => t.jobId.startsWith(id)).length);
    await waitFor(() => held().every((n) => n === 2), 10_000, "every volunteer holding two units").catch((e) => { console.log("held", held()); throw e; });
    expect(held()).toEqual([2, 2, 2]);
  });
});

// A newcomer's frames keep a place for a ringer (a task whose answer the server computes
// itself). No ringer can be made of a program's unit (programs are audited instead), and the
// place stayed empty: a volunteer that had passed no check yet got one unit at a time, and
// fetched each unit's input only after returning the last one.
describe("a program job given to newcomers (spot-checks on)", () => {
  let srv: TestServer;
  let user: Awaited<ReturnType<typeof createUserWithKey>>;
  const volunteers: RawVolunteer[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ SPOT_CHECKS: "on" });
    user = await createUserWithKey(srv.deps, "newcomers@example.com");
    for (let i = 0; i < 2; i++) {
      const v = await RawVolunteer.connect(srv.url);
      v.hello(1); // one thread: a window of two tasks
      await v.next("welcome");
      volunteers.push(v);
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all(volunteers.map((v) => v.close()));
    await srv?.close();
  });

  it("fills a newcomer's window, the ringer's place included, when no ringer can be made", async () => {
    const res = await fetch(`${srv.url}/api/programs?name=double.js`, {
      method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body: "export function run(x) { return 2 * x; }",
    });
    expect(res.status).toBe(201);
    const { hash } = (await res.json()) as { hash: string };
    const { id } = await trpc(srv.url, user.apiKey).jobs.submit.mutate({
      kernel: "program", program: hash, input: { mode: "json", items: [1, 2, 3, 4, 5, 6] },
      replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
    } as never);
    const held = () => volunteers.map((v) => v.tasks().filter((t) => t.jobId.startsWith(id)).length);
    await waitFor(() => held().every((n) => n === 2), 10_000, "every newcomer holding two units").catch((e) => { console.log("held", held()); throw e; });
    expect(held()).toEqual([2, 2]);
  });
});
