-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_MetricSample" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "at" DATETIME NOT NULL,
    "values" TEXT NOT NULL,
    "node" TEXT NOT NULL DEFAULT ''
);
INSERT INTO "new_MetricSample" ("at", "id", "values") SELECT "at", "id", "values" FROM "MetricSample";
DROP TABLE "MetricSample";
ALTER TABLE "new_MetricSample" RENAME TO "MetricSample";
CREATE INDEX "MetricSample_at_idx" ON "MetricSample"("at");
CREATE INDEX "MetricSample_node_at_idx" ON "MetricSample"("node", "at");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

