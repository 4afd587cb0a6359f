import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getJob } from "../../server/services/jobs/queries";
import { trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, type TestServer } from "../helpers/server";

// A large running job's result aggregates (they read every result) are reused for a second
// between looks; a small job's, and an ended job's, are read at every look.
describe("jobs.get on a large running job", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ STARTER_CREDITS: "100000" });
  });
  afterAll(() => srv?.close());

  it("reuses the counts of results for up to a second, then reads them again", async () => {
    const { user, apiKey } = await createUserWithKey(srv.deps, "big@example.com");
    const viewer = { id: user.id, role: user.role };
    // No volunteer is connected: the job stays running while its results are written here.
    const { id } = await trpc(srv.url, apiKey).jobs.submit.mutate({ kernel: "pi", chunks: 1200, params: { samples: 1_200_000 }, replication: { replicas: 1, adaptive: false } });
    const units = await srv.deps.db.workUnit.findMany({ where: { jobId: id }, select: { id: true } });
    expect(units).toHaveLength(1200);
    const results = (from: number, to: number, state: string) => srv.deps.db.result.createMany({
      data: units.slice(from, to).map((u, i) => ({ id: `${id}-r${from + i}`, jobId: id, unitId: u.id, volunteerId: "v", accountId: "a", state, output: "1" })),
    });

    // Under the threshold: every look reads them.
    await results(0, 10, "valid");
    await srv.deps.db.job.update({ where: { id }, data: { unitsDone: 10 } });
    expect((await getJob(srv.deps, viewer, id)).results.valid).toBe(10);
    await results(10, 20, "valid");
    expect((await getJob(srv.deps, viewer, id)).results.valid).toBe(20);

    await results(20, 1100, "valid");
    await srv.deps.db.job.update({ where: { id }, data: { unitsDone: 1100 } });
    const t0 = performance.now();
    const first = await getJob(srv.deps, viewer, id);
    expect(first.results).toMatchObject({ valid: 1100, pending: 0 });
    await results(1100, 1150, "pending");
    // Within the second: the same counts (unless this machine took most of it to get here).
    const again = await getJob(srv.deps, viewer, id);
    if (performance.now() - t0 < 900) expect(again.results).toMatchObject({ valid: 1100, pending: 0 });
    await new Promise((r) => setTimeout(r, 1100));
    expect((await getJob(srv.deps, viewer, id)).results).toMatchObject({ valid: 1100, pending: 50 });

    // Ended: read at every look.
    await srv.deps.db.job.update({ where: { id }, data: { state: "cancelled" } });
    await results(1150, 1200, "error");
    expect((await getJob(srv.deps, viewer, id)).results).toMatchObject({ valid: 1100, pending: 50, errors: 50 });
  });
});
