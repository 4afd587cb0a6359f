-- CreateTable
CREATE TABLE "Node" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "url" TEXT NOT NULL,
    "startedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "heartbeatAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "Slice" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "jobId" TEXT NOT NULL,
    "round" INTEGER NOT NULL DEFAULT 0,
    "first" INTEGER NOT NULL,
    "last" INTEGER NOT NULL,
    "owner" TEXT,
    "leaseUntil" DATETIME,
    "epoch" INTEGER NOT NULL DEFAULT 0,
    "done" BOOLEAN NOT NULL DEFAULT false
);

-- CreateIndex
CREATE INDEX "Slice_jobId_idx" ON "Slice"("jobId");

-- CreateIndex
CREATE INDEX "Slice_done_leaseUntil_idx" ON "Slice"("done", "leaseUntil");

