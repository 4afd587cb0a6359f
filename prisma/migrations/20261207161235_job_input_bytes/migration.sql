-- AlterTable
ALTER TABLE "Job" ADD COLUMN "inputBytes" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "Job_inputBytes_idx" ON "Job"("inputBytes");
