-- AlterTable
ALTER TABLE "DataFile" DROP CONSTRAINT "DataFile_pkey",
ADD CONSTRAINT "DataFile_pkey" PRIMARY KEY ("hash", "ownerId");

