-- AlterTable
ALTER TABLE "MetricSample" ADD COLUMN     "node" TEXT NOT NULL DEFAULT '';

-- CreateIndex
CREATE INDEX "MetricSample_node_at_idx" ON "MetricSample"("node", "at");

