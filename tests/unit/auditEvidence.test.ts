import { describe, expect, it } from "vitest";
import { AuditEvidence } from "../../server/coordinator/auditEvidence";
import type { ResultRef } from "../../server/scheduler/types";

// Accounts are signed-in users unless written with their own prefix (anon:…).
const ref = (host: string, account: string): ResultRef => ({ taskId: `t-${host}`, host, account: account.includes(":") ? account : `user:${account}`, output: null, digest: "" });

// A failed audit keeps the account from the job (never a ban: the server's recompute of a
// consumer's program proves nothing against a volunteer); a program the server disagrees with
// everyone on stops being audited.
describe("audit evidence", () => {
  it("bars a disputed account from the job, however many others agreed", () => {
    const e = new AuditEvidence();
    e.agreed("j", ref("h2", "a2"));
    e.agreed("j", ref("h3", "a3"));
    expect(e.disputed("j", ref("h1", "a1"))).toEqual({ kind: "bar", account: "user:a1" });
    expect(e.disputed("j", ref("h4", "a4"))).toEqual({ kind: "bar", account: "user:a4" });
    expect(e.stopped("j")).toBeUndefined();
  });

  it("stops a job's audits once the server disagreed with two accounts and agreed with none", () => {
    const e = new AuditEvidence();
    expect(e.disputed("j", ref("h1", "a1")).kind).toBe("bar");
    // The same account again is no more evidence (and barred already).
    expect(e.disputed("j", ref("h1b", "a1")).kind).toBe("wait");
    const d = e.disputed("j", ref("h2", "a2"));
    expect(d.kind).toBe("irreproducible");
    expect(e.stopped("j")).toMatch(/does not compute the same output everywhere/);
    expect(e.disputed("j", ref("h3", "a3")).kind).toBe("wait");
    expect(e.stopped("other")).toBeUndefined();
    // An account that agreed before it was disputed does not count as agreeing.
    const f = new AuditEvidence();
    f.agreed("j", ref("h1", "a1"));
    f.disputed("j", ref("h1", "a1"));
    expect(f.disputed("j", ref("h2", "a2")).kind).toBe("irreproducible");
  });

  it("bars anonymous volunteers it disagrees with, but takes no number of them as a sign the program is not reproducible", () => {
    const e = new AuditEvidence();
    for (let i = 0; i < 5; i++) expect(e.disputed("j", ref(`h${i}`, `anon:v${i}`))).toEqual({ kind: "bar", account: `anon:v${i}` });
    expect(e.stopped("j")).toBeUndefined();
    // One signed-in account is not enough either; a second is.
    expect(e.disputed("j", ref("h8", "a8")).kind).toBe("bar");
    expect(e.disputed("j", ref("h9", "a9")).kind).toBe("irreproducible");
    expect(e.stopped("j")).toMatch(/disagreed with the results of 2 signed-in accounts/);
  });

  it("forgets a job's evidence half an hour after its last audit", () => {
    let now = 0;
    const e = new AuditEvidence(() => now);
    e.disputed("old", ref("h1", "a1"));
    e.disputed("old", ref("h2", "a2"));
    expect(e.stopped("old")).toBeDefined();
    now = 31 * 60_000;
    e.agreed("new", ref("h3", "a3"));
    expect(e.stopped("old")).toBeUndefined();
  });
});
