import { describe, expect, it } from "vitest";
import { AuditEvidence } from "../../server/coordinator/auditEvidence";
import type { ResultRef } from "../../server/scheduler/types";

const ref = (host: string, account: string): ResultRef => ({ taskId: `t-${host}`, host, account, output: null, digest: "" });

// A failed audit bans only once the server's computation of the job is corroborated by other
// accounts' volunteers; a program the server disagrees with everyone on stops being audited.
describe("audit evidence", () => {
  it("holds a dispute until two other accounts, more than disputed, agreed with the server; then bans it", () => {
    const e = new AuditEvidence();
    expect(e.disputed("j", "owner", ref("h1", "a1"), "differs").kind).toBe("wait");
    expect(e.agreed("j", "owner", ref("h2", "a2")).kind).toBe("wait");
    // The owner's own volunteers do not corroborate the server against someone else.
    expect(e.agreed("j", "owner", ref("h0", "owner")).kind).toBe("wait");
    expect(e.agreed("j", "owner", ref("h3", "a3"))).toEqual({ kind: "ban", disputes: [{ ref: ref("h1", "a1"), reason: "differs" }] });
    // Corroborated now: the next dispute is decided at once.
    expect(e.disputed("j", "owner", ref("h4", "a4"), "also")).toEqual({ kind: "ban", disputes: [{ ref: ref("h4", "a4"), reason: "also" }] });
  });

  it("wants more accounts agreeing than disputing", () => {
    const e = new AuditEvidence();
    e.agreed("j", "o", ref("h1", "a1"));
    e.agreed("j", "o", ref("h2", "a2"));
    expect(e.disputed("j", "o", ref("h3", "a3"), "x").kind).toBe("ban");
    const f = new AuditEvidence();
    f.disputed("j", "o", ref("h3", "a3"), "x");
    f.agreed("j", "o", ref("h1", "a1"));
    expect(f.disputed("j", "o", ref("h4", "a4"), "y").kind).toBe("wait");
    expect(f.agreed("j", "o", ref("h2", "a2")).kind).toBe("wait");
    expect(f.agreed("j", "o", ref("h5", "a5")).kind).toBe("ban");
  });

  it("stops a job's audits, banning nobody, once the server disagreed with two accounts and agreed with none", () => {
    const e = new AuditEvidence();
    expect(e.disputed("j", "o", ref("h1", "a1"), "x").kind).toBe("wait");
    // The same account again is no more evidence.
    expect(e.disputed("j", "o", ref("h1b", "a1"), "x").kind).toBe("wait");
    const d = e.disputed("j", "o", ref("h2", "a2"), "y");
    expect(d.kind).toBe("irreproducible");
    expect(e.stopped("j")).toMatch(/does not compute the same output everywhere/);
    expect(e.agreed("j", "o", ref("h3", "a3")).kind).toBe("wait");
    expect(e.stopped("other")).toBeUndefined();
  });

  it("forgets a job's evidence half an hour after its last audit", () => {
    let now = 0;
    const e = new AuditEvidence(() => now);
    e.disputed("old", "o", ref("h1", "a1"), "x");
    e.disputed("old", "o", ref("h2", "a2"), "x");
    expect(e.stopped("old")).toBeDefined();
    now = 31 * 60_000;
    e.agreed("new", "o", ref("h3", "a3"));
    expect(e.stopped("old")).toBeUndefined();
  });
});
