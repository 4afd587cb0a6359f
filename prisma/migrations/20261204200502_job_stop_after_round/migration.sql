-- AlterTable
ALTER TABLE "Job" ADD COLUMN "stopAfterRound" BOOLEAN NOT NULL DEFAULT false;
