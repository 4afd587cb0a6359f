import { describe, expect, it } from "vitest";
import { judgeTrpcFrame, MAX_TRPC_SOCKETS_PER_ADDRESS, MAX_TRPC_SUBSCRIPTIONS, TrpcSocketBudget } from "../../server/http/trpcSocketGuard";

const sub = (id: number) => JSON.stringify({ id, method: "subscription", params: { path: "cluster.watch" } });

describe("TrpcSocketBudget", () => {
  it("counts sockets per IPv4 address and per IPv6 /64, and frees a place once", () => {
    const budget = new TrpcSocketBudget();
    const releases = Array.from({ length: MAX_TRPC_SOCKETS_PER_ADDRESS }, (_, i) => budget.admit(`2001:db8:1:2::${i.toString(16)}`));
    expect(releases.every(Boolean)).toBe(true);
    // Another address of the same /64: full; of another /64, or an IPv4 address: room.
    expect(budget.admit("2001:db8:1:2:ffff::1")).toBeUndefined();
    expect(budget.admit("2001:db8:1:3::1")).toBeDefined();
    expect(budget.admit("192.0.2.7")).toBeDefined();
    releases[0]!();
    releases[0]!();
    expect(budget.admit("2001:db8:1:2::99")).toBeDefined();
    expect(budget.admit("2001:db8:1:2::98")).toBeUndefined();
  });

  it("refuses a subscription past the server's total, and counts stops", () => {
    const budget = new TrpcSocketBudget();
    budget.subscriptions = MAX_TRPC_SUBSCRIPTIONS - 1;
    const open = new Set<unknown>();
    expect(judgeTrpcFrame(sub(1), open, budget)).toBeUndefined();
    expect(judgeTrpcFrame(sub(1), open, budget)).toBeUndefined(); // the same id again: not counted twice
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS);
    expect(judgeTrpcFrame(sub(2), new Set(), budget)).toMatch(/all the subscriptions it can hold/);
    expect(judgeTrpcFrame(JSON.stringify({ id: 1, method: "subscription.stop" }), open, budget)).toBeUndefined();
    expect(budget.subscriptions).toBe(MAX_TRPC_SUBSCRIPTIONS - 1);
    expect(judgeTrpcFrame(sub(2), new Set(), budget)).toBeUndefined();
  });
});
