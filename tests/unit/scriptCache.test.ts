import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, expect, it } from "vitest";
import { compiledScript, wasmModule } from "../../server/services/programs/scriptCache";
import { DirectoryBlobStore } from "../../server/store/blobs";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-scripts-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("reads a compiled script from the blob store once, then answers it from memory by its hash", async () => {
  const blobs = new DirectoryBlobStore(dir);
  const a = await blobs.put("export function step() { return 'ü'; }");
  const b = await blobs.put("export function step() { return 2; }");
  expect(await compiledScript(blobs, a)).toBe("export function step() { return 'ü'; }");
  // Gone from the store: the kept copy still answers (the bytes behind a hash never change).
  await blobs.delete(a);
  expect(await compiledScript(blobs, a)).toBe("export function step() { return 'ü'; }");
  expect(await compiledScript(blobs, b)).toBe("export function step() { return 2; }");
  // A hash never read and not stored fails as the store does.
  await expect(compiledScript(blobs, "0".repeat(64))).rejects.toMatchObject({ code: "ENOENT" });
});

it("keeps a WASM module's bytes by hash the same way, apart from scripts", async () => {
  const blobs = new DirectoryBlobStore(dir);
  const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
  const hash = await blobs.put(Buffer.from(bytes));
  expect(await wasmModule(blobs, hash)).toEqual(bytes);
  await blobs.delete(hash);
  expect(await wasmModule(blobs, hash)).toEqual(bytes);
});
