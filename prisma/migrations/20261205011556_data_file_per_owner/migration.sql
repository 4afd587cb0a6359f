-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_DataFile" (
    "hash" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "ownerId" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,

    PRIMARY KEY ("hash", "ownerId")
);
INSERT INTO "new_DataFile" ("createdAt", "hash", "name", "ownerId", "size") SELECT "createdAt", "hash", "name", "ownerId", "size" FROM "DataFile";
DROP TABLE "DataFile";
ALTER TABLE "new_DataFile" RENAME TO "DataFile";
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

