-- CreateTable
CREATE TABLE "JobRound" (
    "jobId" TEXT NOT NULL,
    "round" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "next" TEXT,
    "metric" REAL,
    "stats" TEXT,
    "done" BOOLEAN NOT NULL DEFAULT false,
    "startedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" DATETIME,
    "latencyMs" INTEGER,

    PRIMARY KEY ("jobId", "round"),
    CONSTRAINT "JobRound_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_WorkUnit" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "jobId" TEXT NOT NULL,
    "idx" INTEGER NOT NULL,
    "round" INTEGER NOT NULL DEFAULT 0,
    "input" TEXT NOT NULL,
    "work" INTEGER NOT NULL,
    "pay" INTEGER NOT NULL,
    "done" BOOLEAN NOT NULL DEFAULT false,
    "output" TEXT,
    "volunteerId" TEXT,
    "completedAt" DATETIME,
    CONSTRAINT "WorkUnit_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_WorkUnit" ("completedAt", "done", "id", "idx", "input", "jobId", "output", "pay", "volunteerId", "work") SELECT "completedAt", "done", "id", "idx", "input", "jobId", "output", "pay", "volunteerId", "work" FROM "WorkUnit";
DROP TABLE "WorkUnit";
ALTER TABLE "new_WorkUnit" RENAME TO "WorkUnit";
CREATE INDEX "WorkUnit_jobId_done_idx" ON "WorkUnit"("jobId", "done");
CREATE UNIQUE INDEX "WorkUnit_jobId_round_idx_key" ON "WorkUnit"("jobId", "round", "idx");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

