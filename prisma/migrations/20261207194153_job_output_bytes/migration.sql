-- AlterTable
ALTER TABLE "Job" ADD COLUMN "outputBytes" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "Job_outputBytes_idx" ON "Job"("outputBytes");

-- Program jobs from before: measured once by the collector, like those that end from now on.
UPDATE "Job" SET "outputBytes" = -1 WHERE "programHash" IS NOT NULL;
