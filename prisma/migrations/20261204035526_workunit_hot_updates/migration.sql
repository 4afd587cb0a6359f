-- DropIndex
DROP INDEX "WorkUnit_jobId_done_idx";

