import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, startCliVolunteer, startTestServer, waitFor, type CliVolunteer, type TestServer } from "../helpers/server";
import { trpc } from "../helpers/clients";

// The server's sandbox threads (programs' reduces and steps) are few. An account whose
// reduces spin until their time limit (the job's, up to an hour) held every one of them for
// the price of two one-unit jobs: every other account's merges and comparator uploads waited,
// and a cancel did not stop them.
describe("the server's sandbox threads under a spinning reduce", () => {
  let srv: TestServer;
  let volunteer: CliVolunteer;
  let attacker: Awaited<ReturnType<typeof createUserWithKey>>;
  let honest: Awaited<ReturnType<typeof createUserWithKey>>;

  const upload = (key: string, source: string, name: string) =>
    fetch(`${srv.url}/api/programs?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: source });
  const state = async (key: string, id: string) => (await trpc(srv.url, key).jobs.get.query({ id })).state;

  beforeAll(async () => {
    srv = await startTestServer();
    attacker = await createUserWithKey(srv.deps, "spinner@example.com");
    honest = await createUserWithKey(srv.deps, "honest@example.com");
    volunteer = startCliVolunteer(srv.url, 2, { dir: srv.dir });
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 30_000, "a volunteer");
  });
  afterAll(async () => {
    await volunteer?.stop();
    await srv?.close();
  });

  it("shares them between accounts, keeps uploads apart, and stops a cancelled job's reduce", async () => {
    const spin = await (await upload(attacker.apiKey, "export function run(x) { return x; }\nexport function reduce() { while (true) {} }\n", "spin.js")).json();
    const submit = (key: string, program: string, extra: Record<string, unknown> = {}) =>
      trpc(srv.url, key).jobs.submit.mutate({
        kernel: "program", program, input: { mode: "range", start: 0, end: 2 }, chunks: 1, merge: "reduce", cpuSecondsPerUnit: 0.001,
        replication: { replicas: 1, adaptive: false }, ...extra,
      } as never);
    const spinning = [
      await submit(attacker.apiKey, spin.hash, { timeLimitSeconds: 3600 }),
      await submit(attacker.apiKey, spin.hash, { timeLimitSeconds: 3600 }),
    ];
    // Both units computed: the attacker's reduces hold (or wait for) the sandbox threads.
    await waitFor(async () => {
      const jobs = await Promise.all(spinning.map((j) => trpc(srv.url, attacker.apiKey).jobs.get.query({ id: j.id })));
      return jobs.every((j) => j.state === "running" && j.progress.done === 1);
    }, 30_000, "the spinning jobs' units");

    // Another account's merge gets a thread at once, not after the attacker's reduces.
    const sum = await (await upload(honest.apiKey, "export function run() { return 20; }\nexport function reduce(outs) { return outs.reduce((a, b) => a + b, 1); }\n", "sum.js")).json();
    const mine = await submit(honest.apiKey, sum.hash);
    await waitFor(async () => (await state(honest.apiKey, mine.id)) !== "running", 20_000, "the honest job's merge");
    expect(await state(honest.apiKey, mine.id)).toBe("completed");
    expect(await trpc(srv.url, honest.apiKey).jobs.result.query({ id: mine.id })).toBe(21);

    // A comparator is read at upload in a slot of its own.
    const t0 = Date.now();
    const withComparator = await upload(honest.apiKey, "export const comparator = { kind: \"tolerance\", relative: 1e-9, absolute: 0 };\nexport function run(x) { return x; }\n", "cmp.js");
    expect(withComparator.status).toBe(201);
    expect(Date.now() - t0).toBeLessThan(10_000);

    // Cancelling stops a reduce under way (or one waiting its turn): the jobs end cancelled now.
    for (const j of spinning) {
      const after = await trpc(srv.url, attacker.apiKey).jobs.cancel.mutate({ id: j.id });
      expect(after.state).toBe("cancelled");
    }
  }, 90_000);
});
