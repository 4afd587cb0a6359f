import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/** Content-addressed files under <dataDir>/blobs: large results stay out of database rows. */
export class BlobStore {
  constructor(private readonly dir: string) {}

  private file(hash: string) {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error("not a sha256 hash");
    return path.join(this.dir, hash.slice(0, 2), hash);
  }

  async put(data: string | Uint8Array): Promise<string> {
    const hash = crypto.createHash("sha256").update(data).digest("hex");
    const file = this.file(hash);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // Write then rename, so a crash never leaves a truncated blob under its hash.
    const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
    return hash;
  }

  async get(hash: string): Promise<Buffer> {
    return fs.readFile(this.file(hash));
  }
}
