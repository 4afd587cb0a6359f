import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerMessage } from "../../worker/protocol/messages";
import { runInteractive } from "../../worker/interactive";
import { runCli, startCliVolunteer, startTestServer, waitFor, type TestServer } from "../helpers/server";
import { RawVolunteer, trpc, trpcError } from "../helpers/clients";
import { startVolunteer, type FleetVolunteer } from "../helpers/fleet";

// Interactive tasks end to end: a real server, a real VolunteerClient (in process) and a
// hand-driven volunteer that says it is busy, the tRPC API and the `tabgrid calc` command.

let srv: TestServer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  srv = await startTestServer();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await srv?.close();
});

const keyOf = (volunteerId: string) => srv.deps.coordinator.volunteers().find((v) => v.volunteerId === volunteerId)?.key;
const loadOf = (volunteerId: string) => {
  const key = keyOf(volunteerId);
  return key ? srv.deps.coordinator.interactive.load(key) : undefined;
};

/**
 * A hand-driven volunteer reporting `cpu`: "wrong" answers interactive tasks with a value no
 * honest volunteer would (so a misroute shows), "right" computes them, "silent" never answers.
 */
async function rawVolunteer(opts: { cpu: number; answer: "wrong" | "right" | "silent" }) {
  const v = await RawVolunteer.connect(srv.url);
  cleanups.push(() => !v.closed && v.close());
  v.hello(2);
  await v.next("welcome");
  v.send({ type: "load", cpu: opts.cpu, inFlight: 3 });
  const asked: string[] = [];
  v.ws.on("message", (data) => {
    const m = JSON.parse(data.toString()) as ServerMessage;
    if (m.type !== "interactive") return;
    asked.push((m.input as { expression: string }).expression);
    if (opts.answer === "wrong") v.send({ type: "interactive-result", id: m.id, value: -999, ops: ["computed by the wrong volunteer"] });
    if (opts.answer === "right") v.send({ type: "interactive-result", id: m.id, ...runInteractive(m.kernel, m.input) });
  });
  await waitFor(() => loadOf(v.identity.volunteerId)?.cpu === opts.cpu, 5000, "the load report to arrive");
  return { v, asked };
}

describe("calc: interactive tasks on volunteers", () => {
  it("says clearly that nobody can compute when no volunteer is connected", async () => {
    const e = await trpcError(trpc(srv.url).calc.evaluate.mutate({ expression: "1+1" }));
    expect(e.code).toBe("SERVICE_UNAVAILABLE");
    expect(e.message).toMatch(/no volunteers are connected/);
  });

  let idle: FleetVolunteer;
  let busy: Awaited<ReturnType<typeof rawVolunteer>>;

  it("routes to the less loaded volunteer, answers in milliseconds and stays there", async () => {
    idle = startVolunteer(srv.url, { name: "idle", threads: 2 });
    cleanups.push(() => idle.stop());
    await idle.connected();
    busy = await rawVolunteer({ cpu: 0.95, answer: "wrong" });
    // The in-process volunteer reports its own load (no task running: 0) once welcomed.
    await waitFor(() => loadOf(idle.identity.volunteerId), 5000, "the idle volunteer's load report");
    expect(loadOf(idle.identity.volunteerId)).toMatchObject({ cpu: 0, inFlight: 0 });

    const api = trpc(srv.url);
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const r = await api.calc.evaluate.mutate({ expression: "2*(3+4)/5" });
      const roundTrip = performance.now() - started;
      latencies.push(roundTrip);
      // Two volunteers: the pair is always both of them, so the idle one wins every time.
      expect(r).toMatchObject({ expression: "2*(3+4)/5", value: 2.8, volunteerId: idle.identity.volunteerId });
      expect(r.ops).toEqual(["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"]);
      expect(r.ms).toBeGreaterThanOrEqual(0);
      expect(r.ms).toBeLessThan(1000);
      if (i === 0) console.log(`calc 2*(3+4)/5 = ${r.value} on ${r.volunteerId}: ${r.ms} ms on the server, ${roundTrip.toFixed(1)} ms round trip`);
    }
    latencies.sort((a, b) => a - b);
    console.log(`calc round trips over HTTP: median ${latencies[5].toFixed(1)} ms, max ${latencies[9].toFixed(1)} ms`);
    expect(latencies[9]).toBeLessThan(1000);
    expect(busy.asked).toEqual([]);
  });

  it("keeps a log of the operations on the volunteer that ran them", () => {
    const log = idle.snapshot().interactiveLog;
    expect(log).toHaveLength(10);
    expect(log.at(-1)).toMatchObject({ kernel: "calc", expression: "2*(3+4)/5", value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"] });
    expect(log.at(-1)!.at).toBeGreaterThan(Date.now() - 60_000);
    expect(idle.logs).toContain("calc 2*(3+4)/5 = 2.8: 3 + 4 = 7, 2 * 7 = 14, 14 / 5 = 2.8");
  });

  it("reports division by zero from the volunteer's evaluation as a clear error", async () => {
    const e = await trpcError(trpc(srv.url).calc.evaluate.mutate({ expression: "4 / (2 - 2)" }));
    expect(e).toMatchObject({ code: "BAD_REQUEST", httpStatus: 400, message: "division by zero in 4 / 0" });
    // It was the volunteer that found it: its log says so.
    expect(idle.snapshot().interactiveLog.at(-1)).toMatchObject({ expression: "4 / (2 - 2)", error: "division by zero in 4 / 0", ops: ["2 - 2 = 0"] });
  });

  it("refuses malformed expressions before routing anything", async () => {
    const api = trpc(srv.url);
    const before = idle.snapshot().interactiveLog.length;
    const cases: Array<[string, string]> = [
      ["2*(3+4))/5", "malformed expression: unexpected ')' at column 8"],
      ["2*(3+", "malformed expression: unexpected end of expression at column 6"],
      ["2 + abc", "malformed expression: unexpected 'a' at column 5"],
      ["", "malformed expression: the expression is empty"],
    ];
    for (const [expression, message] of cases) {
      expect(await trpcError(api.calc.evaluate.mutate({ expression }))).toMatchObject({ code: "BAD_REQUEST", message });
    }
    const long = await trpcError(api.calc.evaluate.mutate({ expression: "1+".repeat(600) + "1" }));
    expect(long).toMatchObject({ code: "BAD_REQUEST", message: "expression too long (1201 characters; the limit is 1000)" });
    expect(idle.snapshot().interactiveLog.length).toBe(before);
    expect(busy.asked).toEqual([]);
  });

  it("does not hang on a volunteer that never answers: one retry elsewhere, the silent one passed over, the server's answer when nobody else is there", async () => {
    const interactive = srv.deps.coordinator.interactive;
    const timeout = interactive.timeoutMs;
    interactive.timeoutMs = 300;
    try {
      busy.v.close();
      idle.stop();
      await waitFor(() => srv.deps.coordinator.volunteers().length === 0, 5000, "the first volunteers to leave");
      // The silent one looks the least loaded, so it is always asked first.
      const silent = await rawVolunteer({ cpu: 0, answer: "silent" });
      const slow = await rawVolunteer({ cpu: 0.9, answer: "right" });
      const api = trpc(srv.url);
      const r = await api.calc.evaluate.mutate({ expression: "6*7" });
      expect(r).toMatchObject({ value: 42, ops: ["6 * 7 = 42"], volunteerId: slow.v.identity.volunteerId });
      expect(r.ms).toBeGreaterThanOrEqual(290);
      expect(silent.asked).toEqual(["6*7"]);
      expect(slow.asked).toEqual(["6*7"]);
      console.log(`silent volunteer first: answered by the other after ${r.ms} ms`);

      // It is passed over for a minute now: the other one is asked at once.
      const next = await api.calc.evaluate.mutate({ expression: "2*3" });
      expect(next).toMatchObject({ value: 6, volunteerId: slow.v.identity.volunteerId });
      expect(next.ms).toBeLessThan(290);
      expect(silent.asked).toEqual(["6*7"]);

      // With nobody else to ask, the server's own evaluation answers (silent sockets do not take calc away from everyone).
      slow.v.close();
      await waitFor(() => !keyOf(slow.v.identity.volunteerId), 5000, "the other volunteer to leave");
      const started = performance.now();
      expect(await api.calc.evaluate.mutate({ expression: "1+1" })).toMatchObject({ value: 2, ops: ["1 + 1 = 2"], volunteerId: "the server" });
      expect(performance.now() - started).toBeLessThan(2000);
      // And where the expression fails, its error does (not a timeout).
      const e = await trpcError(api.calc.evaluate.mutate({ expression: "1/0" }));
      expect(e.code).toBe("BAD_REQUEST");
      expect(e.message).toMatch(/division by zero/);
      expect(silent.asked).toEqual(["6*7"]);
      silent.v.close();
    } finally {
      interactive.timeoutMs = timeout;
    }
  });

  it("gives the server's own answer when the volunteer lies, with the server's operations, and bans the liar", async () => {
    await waitFor(() => srv.deps.coordinator.volunteers().length === 0, 5000, "the other volunteers to leave");
    // A stranger's socket that says it is idle and answers every call with -999 (or a made-up error).
    const liar = await rawVolunteer({ cpu: 0, answer: "wrong" });
    const api = trpc(srv.url);
    // A value where the expression fails is not taken (nor proof of a lie: an older evaluator may differ on errors).
    const e = await trpcError(api.calc.evaluate.mutate({ expression: "1/(2-2)" }));
    expect(e.code).toBe("BAD_REQUEST");
    expect(e.message).toMatch(/division by zero in 1 \/ 0/);
    expect(liar.v.closed).toBeUndefined();

    const r = await api.calc.evaluate.mutate({ expression: "2*(3+4)/5" });
    expect(liar.asked).toEqual(["1/(2-2)", "2*(3+4)/5"]);
    expect(r).toMatchObject({ value: 2.8, ops: ["3 + 4 = 7", "2 * 7 = 14", "14 / 5 = 2.8"], volunteerId: "the server" });
    // A wrong value where the server computes one is proof, as a failed spot-check is: the
    // liar is told, its socket closed, and it is not chosen again; its identity is refused.
    expect(await liar.v.next("error")).toMatchObject({ code: "banned", message: expect.stringMatching(/answered a calculation wrong: "2\*\(3\+4\)\/5" is 2\.8, not -999/) });
    expect(await liar.v.waitClosed()).toEqual({ code: 1008, reason: "banned" });
    const again = await RawVolunteer.connect(srv.url, { identity: liar.v.identity });
    again.hello(2);
    expect(await again.next("error")).toMatchObject({ code: "hello-refused", message: expect.stringMatching(/^banned until .*answered a calculation wrong/) });
    again.close();
    const none = await trpcError(api.calc.evaluate.mutate({ expression: "1+1" }));
    expect(none.code).toBe("SERVICE_UNAVAILABLE");
  });
});

describe("tabgrid calc", () => {
  it("prints the answer, --json gives the details, errors exit 1 with the message; the CLI volunteer logs the ops", async () => {
    const volunteer = startCliVolunteer(srv.url, 1, { name: "calc-cli", dir: srv.dir });
    cleanups.push(() => volunteer.stop());
    await waitFor(() => loadOf(volunteer.identity.volunteerId), 30_000, "the CLI volunteer's load report");

    const plain = await runCli(["calc", "2*(3+4)/5", "--url", srv.url]);
    expect(plain.stderr).toBe("");
    expect(plain).toMatchObject({ code: 0, stdout: "2.8\n" });

    const json = await runCli(["calc", "--json", "--url", srv.url, "2^10 - 24"]);
    expect(json.code).toBe(0);
    const out = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ expression: "2^10 - 24", value: 1000, volunteerId: volunteer.identity.volunteerId });
    expect(Object.keys(out).sort()).toEqual(["expression", "ms", "value", "volunteerId"]);
    expect(out.ms).toBeLessThan(1000);

    // Unquoted words and a leading minus work too.
    expect(await runCli(["calc", "--url", srv.url, "-3", "+", "4"])).toMatchObject({ code: 0, stdout: "1\n" });

    const zero = await runCli(["calc", "1/0", "--url", srv.url]);
    expect(zero.code).toBe(1);
    expect(zero.stdout).toBe("");
    expect(zero.stderr.trim()).toBe("tabgrid calc: division by zero in 1 / 0");

    const bad = await runCli(["calc", "2*(3", "--url", srv.url]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe("tabgrid calc: malformed expression: expected ')' to close the '(' at column 3, found end of expression at column 5");

    await waitFor(() => volunteer.output().includes("[volunteer] calc 1/0: division by zero in 1 / 0"), 5000, "the volunteer's log lines");
    expect(volunteer.output()).toContain("[volunteer] calc 2*(3+4)/5 = 2.8: 3 + 4 = 7, 2 * 7 = 14, 14 / 5 = 2.8");
    expect(volunteer.output()).toContain("[volunteer] calc 2^10 - 24 = 1000: 2 ^ 10 = 1024, 1024 - 24 = 1000");
  });
});

describe("the calculator's rate for anonymous callers", () => {
  it("is counted per network address: one client spending its own does not lock others out", async () => {
    const proxied = await startTestServer({ TRUST_PROXY: "1" });
    cleanups.push(() => proxied.close());
    const from = (ip: string) => trpc(proxied.url, undefined, { "x-forwarded-for": ip }).calc.evaluate;
    // No volunteer is online: an allowed call fails for want of one, a refused one with TOO_MANY_REQUESTS.
    const codes: Array<string | undefined> = [];
    while (codes.length < 300 && codes.at(-1) !== "TOO_MANY_REQUESTS") codes.push((await trpcError(from("203.0.113.5").mutate({ expression: "1+1" }))).code);
    expect(codes.at(-1)).toBe("TOO_MANY_REQUESTS");
    // Its burst (60) first, then what came back while it asked.
    expect(codes.length).toBeGreaterThan(60);
    expect(codes.slice(0, -1).every((c) => c === "SERVICE_UNAVAILABLE")).toBe(true);
    expect((await trpcError(from("198.51.100.7").mutate({ expression: "1+1" }))).code).toBe("SERVICE_UNAVAILABLE");
  });
});
