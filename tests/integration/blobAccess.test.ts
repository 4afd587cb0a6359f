import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUserWithKey, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";

// GET /api/blobs/<sha256>: served to anyone only while a job running here reads the blob (its
// volunteers fetch it anonymously); anything else stored (an uploaded data file, a program's
// source) only to the account that uploaded it. Served to whoever named its hash, it let a
// stranger learn whether a known file had been uploaded, and read it.
describe("who may fetch a stored blob", () => {
  let srv: TestServer;
  let alice: Awaited<ReturnType<typeof createUserWithKey>>;
  let bob: Awaited<ReturnType<typeof createUserWithKey>>;

  beforeAll(async () => {
    srv = await startTestServer();
    alice = await createUserWithKey(srv.deps, "alice-blobs@example.com");
    bob = await createUserWithKey(srv.deps, "bob-blobs@example.com");
  });
  afterAll(() => srv?.close());

  const post = (kind: "programs" | "data", body: string, name: string) =>
    fetch(`${srv.url}/api/${kind}?name=${name}`, { method: "POST", headers: { authorization: `Bearer ${alice.apiKey}` }, body }).then((r) => r.json());
  /** The status of a GET of the blob: anonymous, or with an account's key. */
  const get = async (hash: string, apiKey?: string, token?: string) => {
    const res = await fetch(`${srv.url}/api/blobs/${hash}${token === undefined ? "" : `?t=${encodeURIComponent(token)}`}`, apiKey ? { headers: { authorization: `Bearer ${apiKey}` } } : {});
    await res.arrayBuffer();
    return res.status;
  };

  it("serves an upload to its owner only, a running job's blobs to anyone, and neither once the job ended", async () => {
    const data = (await post("data", "alpha beta\ngamma delta\nepsilon zeta\neta theta\n", "private.txt")) as { hash: string };
    const program = (await post("programs", "export function run(text) { return text.split(/\\s+/).length; }\n", "count.js")) as { hash: string; scriptHash: string };
    // Uploaded, used by no job: the owner gets each; anyone else, or nobody signed in, a 404 as for a blob never stored.
    for (const hash of [data.hash, program.hash, program.scriptHash]) {
      expect(await get(hash, alice.apiKey)).toBe(200);
      expect(await get(hash, bob.apiKey)).toBe(404);
      expect(await get(hash)).toBe(404);
    }

    // A job reads the compiled script and the chunks cut from the file: its volunteers (no account) fetch them.
    const api = trpc(srv.url, alice.apiKey);
    const { id } = await api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 2, replication: { replicas: 1 } } as never);
    const units = await srv.deps.db.workUnit.findMany({ where: { jobId: id }, select: { input: true } });
    const chunks = units.map((u) => (JSON.parse(u.input) as { blob: string }).blob);
    expect(chunks).toHaveLength(2);
    for (const hash of [program.scriptHash, ...chunks]) expect(await get(hash)).toBe(200);
    // What the job does not read stays private: the uploaded file and the program's source.
    expect(await get(data.hash)).toBe(404);
    expect(await get(program.hash)).toBe(404);

    await api.jobs.cancel.mutate({ id });
    await waitFor(async () => (await api.jobs.get.query({ id })).state === "cancelled", 10_000, "the cancel");
    for (const hash of [program.scriptHash, ...chunks]) expect(await get(hash)).toBe(404);
    expect(await get(program.scriptHash, alice.apiKey)).toBe(200);
  });

  it("serves a task's blobs with the token the task carried, on any node, after its job left this one", async () => {
    const data = (await post("data", "one two\nthree four\nfive six\nseven eight\n", "tokens.txt")) as { hash: string };
    const program = (await post("programs", "export function run(text) { return text.length; }\n", "len.js")) as { hash: string; scriptHash: string };
    const api = trpc(srv.url, alice.apiKey);
    const v = await RawVolunteer.connect(srv.url);
    try {
      v.hello(1);
      await v.next("welcome");
      const { id } = await api.jobs.submit.mutate({ kernel: "program", program: program.hash, input: { mode: "lines", data: data.hash }, chunks: 2, replication: { replicas: 1 } } as never);
      const [task] = (await v.next("tasks")).tasks;
      const chunk = (task.input as { blob: string }).blob;
      // A token for each blob the task reads: its compiled script and its chunk, nothing else.
      expect(Object.keys(task.blobs ?? {}).sort()).toEqual([program.scriptHash, chunk].sort());
      const tokens = task.blobs!;
      await api.jobs.cancel.mutate({ id });
      await waitFor(async () => (await api.jobs.get.query({ id })).state === "cancelled", 10_000, "the cancel");
      // No job here reads them any more (as on a cluster's node that never ran the job): the token still opens each.
      for (const hash of [program.scriptHash, chunk]) {
        expect(await get(hash)).toBe(404);
        expect(await get(hash, undefined, tokens[hash])).toBe(200);
      }
      // A token opens its own blob only, and a forged or altered one nothing.
      expect(await get(data.hash, undefined, tokens[chunk])).toBe(404);
      expect(await get(program.hash, undefined, tokens[program.scriptHash])).toBe(404);
      const [expires, mac] = tokens[chunk].split(".");
      expect(await get(chunk, undefined, `${expires}.${mac.slice(0, -1)}${mac.endsWith("A") ? "B" : "A"}`)).toBe(404);
      expect(await get(chunk, undefined, `${(parseInt(expires, 36) + 1).toString(36)}.${mac}`)).toBe(404);
      expect(await get(chunk, undefined, "")).toBe(404);
    } finally {
      await v.close();
    }
  });

  it("runs a program only for an account that uploaded it: another's hash is not found, as if never stored", async () => {
    const source = "export function run(text) { return text.toUpperCase(); }\n";
    const program = (await post("programs", source, "upper.js")) as { hash: string; scriptHash: string };
    const job = { kernel: "program", program: program.hash, input: { mode: "json", items: ["a", "b"] }, replication: { replicas: 1 } } as never;
    const asBob = trpc(srv.url, bob.apiKey);
    // Named by its hash alone, it ran as bob's job, and its compiled code went to whoever volunteered.
    expect(await trpcError(asBob.jobs.submit.mutate(job))).toMatchObject({ code: "NOT_FOUND" });
    expect(await trpcError(asBob.jobs.estimate.query(job))).toMatchObject({ code: "NOT_FOUND" });
    expect(await trpcError(trpc(srv.url).jobs.estimate.query(job))).toMatchObject({ code: "NOT_FOUND" });
    expect(await srv.deps.db.job.count({ where: { ownerId: bob.user.id } })).toBe(0);
    // Its author runs it; so does bob once he uploads the same bytes himself.
    const { id } = await trpc(srv.url, alice.apiKey).jobs.submit.mutate(job);
    await trpc(srv.url, alice.apiKey).jobs.cancel.mutate({ id });
    const again = await fetch(`${srv.url}/api/programs?name=mine.js`, { method: "POST", headers: { authorization: `Bearer ${bob.apiKey}` }, body: source }).then((r) => r.json() as Promise<{ hash: string }>);
    expect(again.hash).toBe(program.hash);
    const mine = await asBob.jobs.submit.mutate(job);
    await asBob.jobs.cancel.mutate({ id: mine.id });
  });
});
