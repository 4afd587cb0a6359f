-- PostgreSQL does not check a result's unit nor a unit's job. Each check locked the parent's row
-- (FOR KEY SHARE) for every row inserted: a quarter of the cost of inserting a result, the
-- hottest write of cluster mode, and a quarter of inserting a unit. The store alone writes
-- these rows, in the transaction that inserts the job with its units, or for units it loaded
-- from this database, and nothing deletes units or jobs.
-- Prisma still knows both relations (queries join on them), and SQLite keeps both constraints.
ALTER TABLE "Result" DROP CONSTRAINT "Result_unitId_fkey";
ALTER TABLE "WorkUnit" DROP CONSTRAINT "WorkUnit_jobId_fkey";
