-- CreateTable
CREATE TABLE "Program" (
    "hash" TEXT NOT NULL PRIMARY KEY,
    "kind" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "scriptHash" TEXT,
    "exports" TEXT NOT NULL,
    "hasReduce" BOOLEAN NOT NULL DEFAULT false,
    "comparator" TEXT,
    "ownerId" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "DataFile" (
    "hash" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "ownerId" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
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
    "programHash" TEXT,
    "inputMode" TEXT,
    "merge" TEXT,
    "timeLimitMs" INTEGER,
    "error" TEXT,
    "result" TEXT,
    "resultBlob" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" DATETIME,
    CONSTRAINT "Job_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Job_programHash_fkey" FOREIGN KEY ("programHash") REFERENCES "Program" ("hash") ON DELETE SET NULL ON UPDATE CASCADE
);
INSERT INTO "new_Job" ("adaptive", "chunks", "cost", "createdAt", "error", "estimate", "finishedAt", "id", "kernel", "leaseMs", "maxReplicas", "ownerId", "params", "price", "quorum", "replicas", "result", "resultBlob", "state", "tolerance", "unitsDone") SELECT "adaptive", "chunks", "cost", "createdAt", "error", "estimate", "finishedAt", "id", "kernel", "leaseMs", "maxReplicas", "ownerId", "params", "price", "quorum", "replicas", "result", "resultBlob", "state", "tolerance", "unitsDone" FROM "Job";
DROP TABLE "Job";
ALTER TABLE "new_Job" RENAME TO "Job";
CREATE INDEX "Job_ownerId_createdAt_idx" ON "Job"("ownerId", "createdAt");
CREATE INDEX "Job_state_idx" ON "Job"("state");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

