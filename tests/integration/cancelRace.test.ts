import { describe, expect, it } from "vitest";
import { TRPCClientError } from "@trpc/client";
import { rawArena } from "../helpers/arena";
import { trpc } from "../helpers/clients";
import { createUserWithKey, waitFor } from "../helpers/server";

// A cancel that came with a job's last results answered 200 with the job "running", and the
// job then completed and was charged in full (5 of 6 tries from outside). A cancel now ends
// the job, or says it could not (409) because the job was completing.
describe("a cancel racing a job's last results", () => {
  const arena = rawArena({});

  it("either cancels the job or answers 409: never 200 with a job that then completes", async () => {
    const { srv } = arena;
    const consumer = await createUserWithKey(srv.deps, "racer@example.com");
    const api = trpc(srv.url, consumer.apiKey);
    const v = await arena.open(8);
    const outcomes: string[] = [];
    for (let trial = 0; trial < 8; trial++) {
      const { id } = await api.jobs.submit.mutate({ kernel: "pi", chunks: 4, params: { samples: 4000 }, replication: { replicas: 1, adaptive: false } });
      await waitFor(() => v.tasks().filter((t) => t.jobId === id).length >= 4, 5000, "the volunteer to hold the job's units");
      await new Promise((r) => setTimeout(r, trial));
      v.answerNew();
      let answered: string;
      try {
        const job = await api.jobs.cancel.mutate({ id });
        answered = `200 ${job.state}`;
      } catch (e) {
        if (!(e instanceof TRPCClientError)) throw e;
        expect((e.data as { code?: string }).code).toBe("CONFLICT");
        expect(e.message).toMatch(new RegExp(`^Job ${id} could not be cancelled`));
        answered = "409";
      }
      // Whatever the answer, the job ends as it said.
      const end = await waitFor(async () => {
        const j = await api.jobs.get.query({ id });
        return j.state === "running" ? undefined : j.state;
      }, 10_000, "the job to end");
      expect(answered === "409" ? end : answered).toBe(answered === "409" ? "completed" : "200 cancelled");
      outcomes.push(`${answered} → ${end}`);
    }
    console.log(`cancels racing the last results: ${outcomes.join(", ")}`);
  }, 60_000);
});
