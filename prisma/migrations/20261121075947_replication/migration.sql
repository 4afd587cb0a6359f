-- CreateTable
CREATE TABLE "Result" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "jobId" TEXT NOT NULL,
    "unitId" TEXT NOT NULL,
    "volunteerId" TEXT NOT NULL,
    "accountId" TEXT NOT NULL,
    "output" TEXT,
    "digest" TEXT,
    "error" TEXT,
    "state" TEXT NOT NULL,
    "paid" INTEGER NOT NULL DEFAULT 0,
    "turnaroundMs" INTEGER NOT NULL DEFAULT 0,
    "receivedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "decidedAt" DATETIME,
    CONSTRAINT "Result_unitId_fkey" FOREIGN KEY ("unitId") REFERENCES "WorkUnit" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Reliability" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "consecutiveValid" INTEGER NOT NULL DEFAULT 0,
    "consecutiveInvalid" INTEGER NOT NULL DEFAULT 0,
    "valid" INTEGER NOT NULL DEFAULT 0,
    "invalid" INTEGER NOT NULL DEFAULT 0,
    "errors" INTEGER NOT NULL DEFAULT 0,
    "turnaroundMsTotal" REAL NOT NULL DEFAULT 0,
    "turnaroundCount" INTEGER NOT NULL DEFAULT 0,
    "bannedUntil" DATETIME,
    "banReason" TEXT,
    "updatedAt" DATETIME NOT NULL
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_Job" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "ownerId" TEXT NOT NULL,
    "kernel" TEXT NOT NULL,
    "params" TEXT NOT NULL,
    "chunks" INTEGER NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'running',
    "price" INTEGER NOT NULL,
    "estimate" INTEGER NOT NULL,
    "cost" INTEGER NOT NULL DEFAULT 0,
    "unitsDone" INTEGER NOT NULL DEFAULT 0,
    "leaseMs" INTEGER NOT NULL,
    "replicas" INTEGER NOT NULL DEFAULT 1,
    "quorum" INTEGER NOT NULL DEFAULT 1,
    "maxReplicas" INTEGER NOT NULL DEFAULT 1,
    "adaptive" BOOLEAN NOT NULL DEFAULT false,
    "tolerance" TEXT,
    "error" TEXT,
    "result" TEXT,
    "resultBlob" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" DATETIME,
    CONSTRAINT "Job_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);
INSERT INTO "new_Job" ("chunks", "cost", "createdAt", "error", "estimate", "finishedAt", "id", "kernel", "leaseMs", "ownerId", "params", "price", "result", "resultBlob", "state", "unitsDone") SELECT "chunks", "cost", "createdAt", "error", "estimate", "finishedAt", "id", "kernel", "leaseMs", "ownerId", "params", "price", "result", "resultBlob", "state", "unitsDone" FROM "Job";
DROP TABLE "Job";
ALTER TABLE "new_Job" RENAME TO "Job";
CREATE INDEX "Job_ownerId_createdAt_idx" ON "Job"("ownerId", "createdAt");
CREATE INDEX "Job_state_idx" ON "Job"("state");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- CreateIndex
CREATE INDEX "Result_jobId_state_idx" ON "Result"("jobId", "state");

-- CreateIndex
CREATE INDEX "Result_unitId_idx" ON "Result"("unitId");

-- CreateIndex
CREATE INDEX "Result_volunteerId_receivedAt_idx" ON "Result"("volunteerId", "receivedAt");

