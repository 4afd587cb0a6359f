import crypto from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { startCluster, type Cluster } from "../../server/cluster/cluster";
import type { NodeSnapshot } from "../../server/cluster/presence";
import { waitFor } from "../helpers/server";

// What nodes share through a real Redis (127.0.0.1:6379 here and on CI machines, or
// REDIS_TEST_URL): each test is a cluster of its own, under a random key prefix.
const REDIS = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";

const opened: Cluster[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

function nodes(n: number, opts: { leaderTtlMs?: number; presenceEveryMs?: number } = {}): Cluster[] {
  const prefix = `tabgrid-test-${crypto.randomBytes(4).toString("hex")}:`;
  const out = Array.from({ length: n }, (_, i) => startCluster({ redisUrl: REDIS, nodeId: `node-${i}`, prefix, log: () => {}, ...opts }));
  opened.push(...out);
  return out;
}

describe("cluster mode through Redis", () => {
  it("a rate limit is one budget for an account across nodes", async () => {
    const [a, b] = nodes(2);
    const la = a.limiter("submit", 0.001, 5);
    const lb = b.limiter("submit", 0.001, 5);
    const taken = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? la : lb).take("user-1")));
    expect(taken.filter(Boolean)).toHaveLength(5);
    // Another account has its own budget.
    expect(await la.take("user-2")).toBe(true);
  });

  it("messages reach the other nodes, not the sender", async () => {
    const [a, b, c] = nodes(3);
    const heard: string[] = [];
    for (const [name, node] of [["a", a], ["b", b], ["c", c]] as const) {
      node.bus.subscribe("cancel", (m, from) => heard.push(`${name}<-${from}:${String(m)}`));
    }
    await c.redisHealth(); // the subscriptions are in place once a round trip is done
    await new Promise((r) => setTimeout(r, 100));
    a.bus.publish("cancel", "job-1");
    await waitFor(() => heard.length >= 2, 5000, "both other nodes to hear the cancel");
    await new Promise((r) => setTimeout(r, 100));
    expect(heard.sort()).toEqual(["b<-node-0:job-1", "c<-node-0:job-1"]);
  });

  it("one node at a time leads, and another takes over when it leaves", async () => {
    const [a, b] = nodes(2, { leaderTtlMs: 600 });
    const la = a.leader("alerts");
    const lb = b.leader("alerts");
    await waitFor(() => la.leader || lb.leader, 3000, "a leader");
    await new Promise((r) => setTimeout(r, 700));
    expect([la.leader, lb.leader].filter(Boolean)).toHaveLength(1);
    const [leader, other] = la.leader ? [la, lb] : [lb, la];
    await leader.close();
    await waitFor(() => other.leader, 3000, "the other node to take over");
    expect(leader.leader).toBe(false);
  });

  it("every node lists every node's volunteers, and a node that stops drops out", async () => {
    const [a, b] = nodes(2, { presenceEveryMs: 100 });
    const snap = (id: string, volunteerId: string) => (): NodeSnapshot => ({
      id, url: `http://${id}`, startedAt: 0, at: Date.now(), status: { volunteers: 1 },
      volunteers: [{ volunteerId, userId: null, agent: "node", threads: 2, connectedAt: 0, tasksDone: 0, earned: 0, held: 0 }],
    });
    const pa = a.presence(snap("node-0", "v-a"));
    const pb = b.presence(snap("node-1", "v-b"));
    const both = await waitFor(async () => ((await pa.nodes()).length === 2 ? pa.nodes() : undefined), 3000, "both nodes present");
    expect(both.map((n) => n.volunteers[0].volunteerId)).toEqual(["v-a", "v-b"]);
    await pb.close();
    expect((await pa.nodes()).map((n) => n.id)).toEqual(["node-0"]);
  });

  it("reports Redis as it finds it, and a node without Redis is alone", async () => {
    const [a] = nodes(1);
    expect(await a.redisHealth()).toBe("ok");
    const alone = startCluster({ log: () => {} });
    expect(alone.mode).toBe("single");
    expect(await alone.redisHealth()).toBeNull();
    expect(alone.leader("alerts").leader).toBe(true);
    const gone = startCluster({ redisUrl: "redis://127.0.0.1:1", nodeId: "lost", log: () => {} });
    opened.push(gone);
    expect(await gone.redisHealth()).not.toBe("ok");
    // Its limiter still answers, from a budget of its own.
    expect(await gone.limiter("submit", 1, 1).take("u")).toBe(true);
  });
});
