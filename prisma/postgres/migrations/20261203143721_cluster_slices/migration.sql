-- CreateTable
CREATE TABLE "Node" (
    "id" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "startedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "heartbeatAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Node_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Slice" (
    "id" TEXT NOT NULL,
    "jobId" TEXT NOT NULL,
    "round" INTEGER NOT NULL DEFAULT 0,
    "first" INTEGER NOT NULL,
    "last" INTEGER NOT NULL,
    "owner" TEXT,
    "leaseUntil" TIMESTAMP(3),
    "epoch" INTEGER NOT NULL DEFAULT 0,
    "done" BOOLEAN NOT NULL DEFAULT false,

    CONSTRAINT "Slice_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "Slice_jobId_idx" ON "Slice"("jobId");

-- CreateIndex
CREATE INDEX "Slice_done_leaseUntil_idx" ON "Slice"("done", "leaseUntil");

