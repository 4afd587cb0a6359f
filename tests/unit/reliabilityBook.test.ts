import { describe, expect, it } from "vitest";
import type { Scheduler } from "../../server/scheduler";
import type { ReliabilityRecord } from "../../server/scheduler/types";
import { ReliabilityBook } from "../../server/coordinator/reliabilityBook";

// The scheduler keeps the counters; the book turns them into rows of increments. Verdicts
// leave their hosts and accounts pending, written once per commit batch.
function fakeScheduler() {
  const records = new Map<string, ReliabilityRecord>();
  const record = (id: string) => {
    let r = records.get(id);
    if (!r) records.set(id, (r = { consecutiveValid: 0, valid: 0, invalid: 0, errors: 0, turnaroundMsTotal: 0, turnaroundCount: 0 }));
    return r;
  };
  const scheduler = { hostRecord: (h: string) => records.get(`host:${h}`), accountRecord: (a: string) => records.get(a) } as unknown as Scheduler;
  const valid = (host: string, account: string) => {
    for (const r of [record(`host:${host}`), record(account)]) {
      r.valid++;
      r.consecutiveValid++;
    }
  };
  return { scheduler, valid };
}

describe("ReliabilityBook.pendingOp", () => {
  it("writes one row per host and account for all the verdicts since the last batch, as increments", () => {
    const { scheduler, valid } = fakeScheduler();
    const book = new ReliabilityBook(scheduler, { afterInvalid: 3, hours: 1 });
    expect(book.pendingOp()).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      valid("h1", "acct");
      book.verdicts([{ host: "h1", account: "acct" }], [], new Date());
    }
    valid("h2", "acct");
    book.verdicts([{ host: "h2", account: "acct" }], [], new Date());

    const op = book.pendingOp()!;
    expect(op.type).toBe("reliability");
    const byId = Object.fromEntries(op.rows.map((r) => [r.id, r]));
    expect(Object.keys(byId).sort()).toEqual(["acct", "host:h1", "host:h2"]);
    expect(byId["host:h1"]).toMatchObject({ consecutiveValid: 3, add: { valid: 3, invalid: 0 } });
    expect(byId["host:h2"]).toMatchObject({ consecutiveValid: 1, add: { valid: 1 } });
    expect(byId.acct).toMatchObject({ consecutiveValid: 4, add: { valid: 4 } });
    // Taken: nothing pending until the next verdict, whose row counts from what was written.
    expect(book.pendingOp()).toBeUndefined();
    valid("h1", "acct");
    book.verdicts([{ host: "h1", account: "acct" }], [], new Date());
    expect(book.pendingOp()!.rows.find((r) => r.id === "host:h1")).toMatchObject({ consecutiveValid: 4, add: { valid: 1 } });
  });

  it("carries a ban decided by the policy in the pending row", () => {
    const { scheduler } = fakeScheduler();
    const book = new ReliabilityBook(scheduler, { afterInvalid: 2, hours: 1 });
    const now = new Date("2026-12-05T12:00:00Z");
    book.verdicts([], [{ host: "bad", account: "cheat" }], now);
    const { banned } = book.verdicts([], [{ host: "bad", account: "cheat" }], now);
    expect(banned.sort()).toEqual(["cheat", "host:bad"]);
    const rows = book.pendingOp()!.rows;
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(r).toMatchObject({ consecutiveInvalid: 2, bannedUntil: new Date("2026-12-05T13:00:00Z"), banReason: "2 invalid results in a row" });
  });
});
