import { describe, expect, it } from "vitest";
import { admitSubmission } from "../../server/services/jobs/submissionRate";
import { startCluster } from "../../server/cluster/cluster";
import type { AppDeps } from "../../server/services/deps";

// The server-wide guard on job submissions: at most 32 in progress, and none while the
// coordinator's commit backlog is long. (The per-account rate is tested against a live
// server in tests/integration/loadShedding.test.ts.)

function deps(backlog: () => number) {
  return {
    coordinator: { commitBacklog: backlog }, env: { SUBMISSIONS_PER_SECOND: 20, SUBMISSION_BURST: 60 }, cluster: startCluster({ log: () => {} }),
  } as unknown as Pick<AppDeps, "coordinator" | "env" | "cluster">;
}

describe("admitSubmission", () => {
  it("runs submissions while fewer than 32 are in progress and refuses the rest at once", async () => {
    const d = deps(() => 0);
    const gates: Array<() => void> = [];
    const running = Array.from({ length: 40 }, (_, i) => admitSubmission(d, () => new Promise<number>((r) => gates.push(() => r(i)))));
    // The 33rd and later were refused without waiting for anything.
    const refused = await Promise.all(running.slice(32));
    expect(refused).toEqual(new Array(8).fill(undefined));
    expect(gates).toHaveLength(32);
    for (const g of gates) g();
    expect((await Promise.all(running.slice(0, 32))).map((a) => a?.value)).toEqual([...Array(32).keys()]);
    // Finished ones free their places.
    expect(await admitSubmission(d, async () => "again")).toEqual({ value: "again" });
  });

  it("refuses while the commit backlog is long, and a failed submission frees its place", async () => {
    let backlog = 50_000;
    const d = deps(() => backlog);
    expect(await admitSubmission(d, async () => 1)).toBeUndefined();
    backlog = 10;
    await expect(admitSubmission(d, async () => { throw new Error("bad input"); })).rejects.toThrow("bad input");
    expect(await admitSubmission(d, async () => 2)).toEqual({ value: 2 });
  });
});
