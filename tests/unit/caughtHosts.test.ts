import { describe, expect, it } from "vitest";
import { Scheduler } from "../../server/scheduler/index.js";
import { CaughtHosts, type CaughtDeps } from "../../server/coordinator/caughtHosts";
import { ReliabilityBook } from "../../server/coordinator/reliabilityBook";
import type { Live } from "../../server/coordinator/live";
import { GroupCommitter } from "../../server/store/groupCommit";
import type { PersistOp } from "../../server/services/jobs/batchSql";
import { hostKey } from "../../server/services/volunteers/reliability";

// A host proved to cheat twice at once (a ringer and a check of its results in flight together,
// or two checks): banned, logged and backtracked once, on its first proof. The second proof
// changes nothing, so the reason stored with the ban is the one in the log.

const NOW = 1_700_000_000_000;
const RINGER = "failed a spot-check: a known-answer pi task of job j came back wrong";
const CHECK = "failed a spot-check: a result for unit 3 of job j differs from the server's own computation";

function caughtHosts() {
  const logs: string[] = [];
  const written: PersistOp[] = [];
  const kicked: string[] = [];
  const reopened: string[][] = [];
  const scheduler = new Scheduler();
  const book = new ReliabilityBook(scheduler, { afterInvalid: 3, hours: 24 });
  const live = { scheduler, now: () => NOW, log: (m: string) => logs.push(m) } as unknown as Live;
  const deps: CaughtDeps = {
    // The caught host's results are all in job "j".
    db: { result: { findMany: async () => [{ jobId: "j" }] } } as unknown as CaughtDeps["db"],
    queue: new GroupCommitter<PersistOp>(async (ops) => void written.push(...ops), { intervalMs: 1, maxBatch: 100 }),
    book,
    lifecycle: {
      reopen: async (jobIds: string[], rewrite: () => Promise<void>) => {
        reopened.push(jobIds);
        await rewrite();
      },
    } as unknown as CaughtDeps["lifecycle"],
    banHours: 24,
    kick: (id) => void kicked.push(id),
  };
  return { caught: new CaughtHosts(live, deps), book, logs, written, kicked, reopened };
}

const ref = (host: string, account: string) => ({ taskId: `t-${host}`, host, account, output: 0, digest: "" });

describe("a host caught twice", () => {
  it("keeps the ban of its first proof, logged, kicked and backtracked once", async () => {
    const c = caughtHosts();
    const cheater = ref("h", "user:m");
    await c.caught.caught(cheater, c.caught.ban([cheater], RINGER), RINGER);
    // Its other result's check comes back wrong too, after the ban.
    expect(c.caught.caught(cheater, c.caught.ban([cheater], CHECK), CHECK)).toBeUndefined();

    for (const id of [hostKey("h"), "user:m"]) expect(c.book.activeBan([id], new Date(NOW))).toMatchObject({ reason: RINGER });
    expect(c.logs).toEqual([`caught ${hostKey("h")} and user:m: ${RINGER}`]);
    expect(c.kicked).toEqual([hostKey("h"), "user:m"]);
    expect(c.reopened).toEqual([["j"]]);
    // What the verdict of the second check persists carries the first proof too.
    expect(c.book.rows([hostKey("h"), "user:m"]).map((r) => r.banReason)).toEqual([RINGER, RINGER]);
    expect(c.written.filter((op) => op.type === "backtrack")).toHaveLength(1);
  });

  it("another host of the same account, caught later, is banned, logged and backtracked on its own proof", async () => {
    const c = caughtHosts();
    const first = ref("h1", "user:m");
    const second = ref("h2", "user:m");
    await c.caught.caught(first, c.caught.ban([first], RINGER), RINGER);
    await c.caught.caught(second, c.caught.ban([second], CHECK), CHECK);
    expect(c.book.activeBan([hostKey("h1")], new Date(NOW))).toMatchObject({ reason: RINGER });
    expect(c.book.activeBan([hostKey("h2")], new Date(NOW))).toMatchObject({ reason: CHECK });
    expect(c.book.activeBan(["user:m"], new Date(NOW))).toMatchObject({ reason: CHECK });
    expect(c.logs).toEqual([`caught ${hostKey("h1")} and user:m: ${RINGER}`, `caught ${hostKey("h2")} and user:m: ${CHECK}`]);
    expect(c.written.filter((op) => op.type === "backtrack")).toHaveLength(2);
  });
});
