-- CreateTable
CREATE TABLE "ProgramUpload" (
    "hash" TEXT NOT NULL,
    "ownerId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ProgramUpload_pkey" PRIMARY KEY ("hash","ownerId")
);

-- CreateIndex
CREATE INDEX "ProgramUpload_ownerId_idx" ON "ProgramUpload"("ownerId");


-- Every program so far was uploaded by its owner (its size then: the upload alone).
INSERT INTO "ProgramUpload" ("hash", "ownerId", "name", "size", "createdAt") SELECT "hash", "ownerId", "name", "size", "createdAt" FROM "Program";
