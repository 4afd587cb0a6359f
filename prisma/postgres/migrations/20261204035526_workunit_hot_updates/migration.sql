-- DropIndex
DROP INDEX "WorkUnit_jobId_done_idx";


-- Room on each page for a unit's row to be rewritten in place when its result lands (a HOT
-- update: no new index entries). A unit is written once and filled in once: the space left is
-- for that one rewrite.
ALTER TABLE "WorkUnit" SET (fillfactor = 70);
