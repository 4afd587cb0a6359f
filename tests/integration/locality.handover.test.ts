import { afterAll, beforeAll, expect, it } from "vitest";
import type { WireTask } from "../../worker/protocol/messages";
import { RawVolunteer, trpc } from "../helpers/clients";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";

// Locality hand-over, over real sockets: volunteer a computed every shard of an iterative
// job's first round; b joins. While a holds two more shards than b, one is handed over: b is
// told to prefetch it while a still computes its unit that round (it has the shard cached),
// and b computes it from the next round on.

let srv: TestServer;
beforeAll(async () => {
  // Units are accepted as sent: the outputs here are made up (and merged by a plain mean: a
  // robust merge would also keep a from more than 5 of the 6 units of a round).
  srv = await startTestServer({ SPOT_CHECKS: "off" });
});
afterAll(() => srv.close());

const SHARDS = 6;
const ROUNDS = 4;
const roundOf = (t: WireTask) => Number(/~r(\d+)/.exec(t.jobId)?.[1]);
const blobOf = (t: WireTask) => (t.input as { blob: string }).blob;

/** Answers every task as it comes, except those `hold` keeps back until released. */
function serve(v: RawVolunteer, hold: (t: WireTask) => boolean = () => false) {
  const answered = new Set<string>();
  const held: WireTask[] = [];
  const timer = setInterval(() => {
    const fresh = v.tasks().filter((t) => !answered.has(t.taskId));
    const now = fresh.filter((t) => !hold(t));
    for (const t of fresh) answered.add(t.taskId);
    held.push(...fresh.filter((t) => hold(t)));
    if (now.length) v.send({ type: "results", results: now.map((t) => ({ taskId: t.taskId, output: [1], ms: 1 })) });
  }, 5);
  return {
    release() {
      if (held.length) v.send({ type: "results", results: held.splice(0).map((t) => ({ taskId: t.taskId, output: [1], ms: 1 })) });
    },
    stop: () => clearInterval(timer),
  };
}

it("hands shards to a volunteer that holds two fewer: it prefetches them while their holder computes the round, and computes them after", async () => {
  const user = await createUserWithKey(srv.deps, "locality@example.com");
  const post = async (kind: string, body: string) =>
    ((await (await fetch(`${srv.url}/api/${kind}?name=f`, { method: "POST", headers: { authorization: `Bearer ${user.apiKey}` }, body })).json()) as { hash: string }).hash;
  const program = await post("programs", "export function run(x) { return [1]; }\nexport function step(merged, state, ctx) { return ctx.round < 4 ? { next: ctx.round, state: ctx.round } : { done: true, result: merged }; }\n");
  const data = await post("data", `x,y\n${Array.from({ length: 60 }, (_, i) => `${i},${i % 2}`).join("\n")}\n`);

  const a = await RawVolunteer.connect(srv.url);
  a.hello(1);
  await a.next("welcome");
  // a computes all of round 1, its last unit held back until b is there.
  let b: RawVolunteer | undefined;
  const aServes = serve(a, (t) => roundOf(t) === 1 && a.tasks().filter((x) => roundOf(x) === 1).length === SHARDS && b === undefined);
  const { id } = await trpc(srv.url, user.apiKey).jobs.submit.mutate({
    kernel: "program", program, input: { mode: "csv", data }, chunks: SHARDS, merge: "mean", rounds: ROUNDS,
    replication: { replicas: 1, adaptive: false }, cpuSecondsPerUnit: 0.001,
  } as never);
  await waitFor(() => a.tasks().filter((t) => roundOf(t) === 1).length === SHARDS, 10_000, "a to take all of round 1");
  b = await RawVolunteer.connect(srv.url);
  b.hello(1);
  await b.next("welcome");
  const bServes = serve(b);
  aServes.release();
  try {
    await waitFor(async () => (await trpc(srv.url, user.apiKey).jobs.get.query({ id })).state === "completed", 20_000, "the job");
    const round = (v: RawVolunteer, r: number) => v.tasks().filter((t) => roundOf(t) === r).map(blobOf).sort();
    const shards = round(a, 1);
    expect(new Set(shards).size).toBe(SHARDS);
    // Every round, each shard computed once, by one or the other.
    for (let r = 1; r <= ROUNDS; r++) expect([...round(a, r), ...round(b, r)].sort()).toEqual(shards);
    const prefetched = b.messages.flatMap((m) => (m.type === "prefetch" ? m.blobs : []));
    expect(prefetched.length).toBeGreaterThan(0);
    expect(a.messages.some((m) => m.type === "prefetch")).toBe(false);
    for (const shard of prefetched) {
      // a computed the shard up to the round it was handed over in (it had it cached), b from the next.
      const rounds = (v: RawVolunteer) => Array.from({ length: ROUNDS }, (_, i) => i + 1).filter((r) => round(v, r).includes(shard));
      expect(rounds(b)[0]).toBe(Math.max(...rounds(a)) + 1);
      // And b was told before it was given the shard's first unit.
      const told = b.messages.findIndex((m) => m.type === "prefetch" && m.blobs.includes(shard));
      const given = b.messages.findIndex((m) => m.type === "tasks" && m.tasks.some((t) => blobOf(t) === shard));
      expect(told).toBeLessThan(given);
    }
    // Evened out in the second round already (each volunteer's window is 2, so a's other units
    // were queued when b asked): three each from the third.
    expect(prefetched).toHaveLength(SHARDS / 2);
    expect(round(a, ROUNDS)).toHaveLength(SHARDS / 2);
    expect(round(b, ROUNDS)).toEqual([...prefetched].sort());
  } finally {
    aServes.stop();
    bServes.stop();
    await Promise.all([a.close(), b.close()]);
  }
});
