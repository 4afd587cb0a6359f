import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Worker } from "node:worker_threads";
import { afterEach, expect, it } from "vitest";
import { DbWriter, WRITER_YOUNG_GENERATION_MB } from "../../server/store/dbWriter";

let writer: DbWriter | undefined;
let dir: string | undefined;
afterEach(async () => {
  await writer?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

it("runs its thread with a small young generation (what it allocates dies with each batch)", async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-writer-"));
  writer = new DbWriter(path.join(dir, "t.db"));
  await writer.ready();
  const thread = await (writer as unknown as { worker: Promise<Worker> }).worker;
  expect(thread.resourceLimits?.maxYoungGenerationSizeMb).toBe(WRITER_YOUNG_GENERATION_MB);
  expect(await writer.setting("journal_mode")).toBe("wal");
});
