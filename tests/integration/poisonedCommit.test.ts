import crypto from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { Commit } from "../../server/coordinator/commit";
import { noObserver } from "../../server/monitoring/observer";
import type { PersistOp } from "../../server/services/jobs/batchSql";
import { anonAccount } from "../../server/services/credits/accounts";
import { createPrisma, type Db } from "../../server/store/prisma";
import { postgresDatabase, releaseEngines, sqliteDatabase } from "../helpers/engines";
import type { TestDatabase } from "../helpers/testDb";

// An op the database refuses for its values once failed its batch at every retry, and every
// commit queued behind it waited forever (results unacknowledged, memory growing). On each
// engine, through the real group commit and hot store: the poisoned ops are found and
// dropped, the ops around them commit, and the queue keeps going.

afterAll(releaseEngines);

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

function volunteerOp(id: string): PersistOp {
  return { type: "volunteer", id, tokenHash: sha256(id), userId: null, name: `CLI · ${id}`, benchmark: 1, at: new Date().toISOString() };
}

async function engine(kind: "sqlite" | "postgres"): Promise<TestDatabase | undefined> {
  return kind === "sqlite" ? sqliteDatabase() : postgresDatabase();
}

describe.each(["sqlite", "postgres"] as const)("a poisoned op in the group commit (%s)", (kind) => {
  it("is dropped and reported, and the ops before, beside and after it commit", async (ctx) => {
    const database = await engine(kind);
    if (!database) return ctx.skip();
    const db: Db = createPrisma(database.databaseUrl);
    const dropped: string[] = [];
    const logs: string[] = [];
    const commit = new Commit(db, {
      intervalMs: 0, observer: { ...noObserver, commitDropped: (op) => dropped.push(op) }, log: (m) => logs.push(m), committed: () => undefined,
    });
    try {
      await commit.ready();
      // Enqueued in one turn, so they share one batch: NOT NULL broken on both engines.
      const poisoned = { ...volunteerOp("v-poisoned"), tokenHash: null } as unknown as PersistOp;
      const ops = [volunteerOp("v-1"), volunteerOp("v-2"), poisoned, volunteerOp("v-3"), volunteerOp("v-4")];
      await Promise.all(ops.map((op) => commit.queue.enqueue(op)));
      // Later batches go on as usual.
      await commit.queue.enqueue(volunteerOp("v-5"));
      const ids = (await db.volunteer.findMany({ select: { id: true }, orderBy: { id: "asc" } })).map((v) => v.id);
      expect(ids).toEqual(["v-1", "v-2", "v-3", "v-4", "v-5"]);
      expect(dropped).toEqual(["volunteer"]);
      expect(logs.filter((m) => m.startsWith("commit dropped a volunteer op (id v-poisoned)"))).toHaveLength(1);
      expect(commit.queue.size).toBe(0);

      if (kind === "postgres") {
        // What stopped every PostgreSQL commit in the fifth attack round: a cpuMs past the
        // integer column (the protocol now refuses it before it gets here).
        const result: PersistOp = {
          type: "result", taskId: "j.0.0~v-1", jobId: "j", unitId: "j.0.0", host: "v-1", account: anonAccount("v-1"),
          outputJson: "1", digest: sha256("1"), turnaroundMs: 10, cpuMs: 3e9, workMs: 3e9,
        };
        await Promise.all([commit.queue.enqueue(result), commit.queue.enqueue(volunteerOp("v-6"))]);
        expect(dropped).toEqual(["volunteer", "result"]);
        expect(await db.volunteer.count({ where: { id: "v-6" } })).toBe(1);
        expect(await db.result.count()).toBe(0);
      }
    } finally {
      await commit.close();
      await db.$disconnect();
      await database.remove();
    }
  });
});
