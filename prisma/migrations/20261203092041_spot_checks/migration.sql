-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_Reliability" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "consecutiveValid" INTEGER NOT NULL DEFAULT 0,
    "consecutiveInvalid" INTEGER NOT NULL DEFAULT 0,
    "valid" INTEGER NOT NULL DEFAULT 0,
    "invalid" INTEGER NOT NULL DEFAULT 0,
    "errors" INTEGER NOT NULL DEFAULT 0,
    "turnaroundMsTotal" REAL NOT NULL DEFAULT 0,
    "turnaroundCount" INTEGER NOT NULL DEFAULT 0,
    "spotChecks" INTEGER NOT NULL DEFAULT 0,
    "bannedUntil" DATETIME,
    "banReason" TEXT,
    "updatedAt" DATETIME NOT NULL
);
INSERT INTO "new_Reliability" ("banReason", "bannedUntil", "consecutiveInvalid", "consecutiveValid", "errors", "id", "invalid", "turnaroundCount", "turnaroundMsTotal", "updatedAt", "valid") SELECT "banReason", "bannedUntil", "consecutiveInvalid", "consecutiveValid", "errors", "id", "invalid", "turnaroundCount", "turnaroundMsTotal", "updatedAt", "valid" FROM "Reliability";
DROP TABLE "Reliability";
ALTER TABLE "new_Reliability" RENAME TO "Reliability";
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

