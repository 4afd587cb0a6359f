import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BlobCache, type BlobCacheOptions } from "../../worker/client/prepareTask";
import { httpGetBytes } from "../../worker/node/httpGetBytes";

// The volunteers' cache of content-addressed blobs, against a real HTTP server: with a
// browser's download and hash (fetch, WebCrypto) and with the CLI volunteer's (node:http,
// node:crypto). A blob whose bytes are not what its name says is refused either way.

const sha = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");
const good = Buffer.from(Array.from({ length: 1_700_000 }, (_, i) => (i * 7) % 256));
const small = Buffer.from("a small blob");
const forged = Buffer.from("not what was asked for");
const forgedName = sha(Buffer.from("the bytes the name promises"));
const missing = sha(Buffer.from("never stored"));

const blobs = new Map([[sha(good), good], [sha(small), small], [forgedName, forged]]);

const ways: Array<[string, BlobCacheOptions]> = [
  ["fetch and WebCrypto (browsers)", {}],
  ["node:http and node:crypto (the CLI)", { download: httpGetBytes, sha256: (b) => crypto.createHash("sha256").update(b).digest("hex") }],
];

describe.each(ways)("BlobCache with %s", (_, opts) => {
  let server: http.Server;
  let url: string;
  let requests: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const hash = (req.url ?? "").replace("/api/blobs/", "");
      requests.push(hash);
      const b = blobs.get(hash);
      res.writeHead(b ? 200 : 404, b ? { "content-length": b.length } : {}).end(b);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server?.close());
  beforeEach(() => {
    requests = [];
  });

  it("fetches a blob once and keeps it", async () => {
    const cache = new BlobCache(url, opts);
    const [a, b] = await Promise.all([cache.get(sha(good)), cache.get(sha(good))]);
    expect(Buffer.from(a).equals(good)).toBe(true);
    expect(b).toBe(a);
    expect(await cache.get(sha(good))).toBe(a);
    expect(requests).toEqual([sha(good)]);
  });

  it("refuses bytes that do not match their name, and keeps nothing of them", async () => {
    const cache = new BlobCache(url, opts);
    await expect(cache.get(forgedName)).rejects.toThrow(`blob ${forgedName.slice(0, 12)} does not match its hash`);
    await expect(cache.get(forgedName)).rejects.toThrow("does not match its hash");
    expect(requests).toEqual([forgedName, forgedName]);
  });

  it("says which blob could not be fetched, and asks again next time", async () => {
    const cache = new BlobCache(url, opts);
    await expect(cache.get(missing)).rejects.toThrow(`could not fetch blob ${missing.slice(0, 12)}: HTTP 404`);
    await expect(cache.get(missing)).rejects.toThrow("HTTP 404");
    expect(requests).toEqual([missing, missing]);
  });

  it("lets the least recently used go past its size", async () => {
    const cache = new BlobCache(url, { ...opts, maxBytes: good.length + small.length });
    await cache.get(sha(good));
    await cache.get(sha(small));
    await cache.get(sha(good)); // now the most recently used
    const third = Buffer.from("tiny"); // smaller than `small`: its room is enough
    blobs.set(sha(third), third);
    await cache.get(sha(third)); // past the size: `small` goes, `good` stays
    requests = [];
    await cache.get(sha(good));
    await cache.get(sha(small));
    expect(requests).toEqual([sha(small)]);
  });
});
