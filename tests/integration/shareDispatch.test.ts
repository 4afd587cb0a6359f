import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

/**
 * A server and `n` raw volunteers of one thread each (a window of two tasks), for one
 * describe; `submit` uploads a program and submits a job of it; `held` counts each
 * volunteer's tasks of a job.
 */
function volunteersOf(env: Record<string, string>, n: number, owner: string) {
  const ctx = { srv: undefined as unknown as TestServer, user: undefined as unknown as Awaited<ReturnType<typeof createUserWithKey>>, volunteers: [] as RawVolunteer[] };
  beforeAll(async () => {
    ctx.srv = await startTestServer(env);
    ctx.user = await createUserWithKey(ctx.srv.deps, owner);
    for (let i = 0; i < n; i++) {
      const v = await RawVolunteer.connect(ctx.srv.url);
      v.hello(1);
      await v.next("welcome");
      ctx.volunteers.push(v);
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.all(ctx.volunteers.map((v) => v.close()));
    await ctx.srv?.close();
  });
  return {
    async submit(source: string, job: Record<string, unknown>): Promise<string> {
      const res = await fetch(`${ctx.srv.url}/api/programs?name=p.js`, { method: "POST", headers: { authorization: `Bearer ${ctx.user.apiKey}` }, body: source });
      expect(res.status).toBe(201);
      const { hash } = (await res.json()) as { hash: string };
      const { id } = await trpc(ctx.srv.url, ctx.user.apiKey).jobs.submit.mutate({
        kernel: "program", program: hash, replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001, ...job,
      } as never);
      return id;
    },
    held: (id: string) => ctx.volunteers.map((v) => v.tasks().filter((t) => t.jobId.startsWith(id)).length),
  };
}

// A robust merge gives no host more of a job's units than it outvotes while another host has
// fewer (JobSpec.maxUnitsPerHost). Dispatch visits volunteers one by one, so the first ones
// visited were refused their second unit while the others still had none: every volunteer
// then held one unit and its prefetch slot stayed empty for the whole round. Once the others
// have theirs, the first ones must be served again.
describe("a job under a share per host", () => {
  // No ringers (known-answer tasks): they would take the second place of a new volunteer's window.
  const fleet = volunteersOf({ SPOT_CHECKS: "off" }, 3, "owner@example.com");

  it("fills every volunteer's window at once, one unit beyond the others at a time", async () => {
    // Eight units merged by a trimmed mean that drops one at each end: one unit a host while others have fewer.
    const id = await fleet.submit("export function run(x) { return [x, 1]; }", { input: { mode: "json", items: [1, 2, 3, 4, 5, 6, 7, 8] }, merge: "trimmed-mean" });
    await waitFor(() => fleet.held(id).every((n) => n === 2), 10_000, "every volunteer holding two units").catch((e) => { console.log("held", fleet.held(id)); throw e; });
    expect(fleet.held(id)).toEqual([2, 2, 2]);
  });
});

// A newcomer's frames keep a place for a ringer (a task whose answer the server computes
// itself). No ringer can be made of a program's unit (programs are audited instead), and the
// place stayed empty: a volunteer that had passed no check yet got one unit at a time, and
// fetched each unit's input only after returning the last one.
describe("a program job given to newcomers (spot-checks on)", () => {
  const fleet = volunteersOf({ SPOT_CHECKS: "on" }, 2, "newcomers@example.com");

  it("fills a newcomer's window, the ringer's place included, when no ringer can be made", async () => {
    const id = await fleet.submit("export function run(x) { return 2 * x; }", { input: { mode: "json", items: [1, 2, 3, 4, 5, 6] } });
    await waitFor(() => fleet.held(id).every((n) => n === 2), 10_000, "every newcomer holding two units").catch((e) => { console.log("held", fleet.held(id)); throw e; });
    expect(fleet.held(id)).toEqual([2, 2]);
  });
});
