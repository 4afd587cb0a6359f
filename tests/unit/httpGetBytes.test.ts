import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGetBytes } from "../../worker/node/httpGetBytes";

// The CLI volunteer's downloads of blobs, against a real HTTP server.

describe("httpGetBytes", () => {
  let server: http.Server;
  let url: string;
  const big = Buffer.from(Array.from({ length: 3_000_000 }, (_, i) => i % 251));

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === "/big") {
        res.writeHead(200, { "content-length": big.length });
        res.end(big);
      } else if (req.url === "/chunked") {
        res.writeHead(200);
        res.write("abc");
        setTimeout(() => res.end("def"), 5);
      } else if (req.url === "/cut") {
        res.writeHead(200, { "content-length": 100 });
        res.write(Buffer.alloc(50));
        setTimeout(() => res.socket?.destroy(), 5);
      } else if (req.url === "/huge") {
        res.writeHead(200, { "content-length": String(5 * 1024 ** 3) });
        res.write("x");
      } else if (req.url === "/auth") {
        res.writeHead(200);
        res.end(req.headers.authorization ?? "none");
      } else {
        res.writeHead(404, { "content-type": "application/json" });
        res.end('{"error":"No blob."}');
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("reads a body of a declared length whole, into bytes of its own", async () => {
    const { status, bytes } = await httpGetBytes(`${url}/big`, {});
    expect(status).toBe(200);
    expect(bytes!.byteLength).toBe(big.length);
    // Not a view of a shared pool: the bytes are sent on with their buffer.
    expect(bytes!.buffer.byteLength).toBe(big.length);
    expect(Buffer.from(bytes!).equals(big)).toBe(true);
  });

  it("reads a body without a length, and sends the headers given", async () => {
    expect(Buffer.from((await httpGetBytes(`${url}/chunked`, {})).bytes!).toString()).toBe("abcdef");
    expect(Buffer.from((await httpGetBytes(`${url}/auth`, { authorization: "Bearer k" })).bytes!).toString()).toBe("Bearer k");
  });

  it("gives the status alone when it is not 200", async () => {
    expect(await httpGetBytes(`${url}/missing`, {})).toEqual({ status: 404 });
  });

  it("refuses a body declared past what it reads, without allocating it", async () => {
    await expect(httpGetBytes(`${url}/huge`, {})).rejects.toThrow(/the server declared 5368709120 bytes, more than the 1073741824 read/);
  });

  it("fails when the connection closes before the declared length, or nobody listens", async () => {
    await expect(httpGetBytes(`${url}/cut`, {})).rejects.toThrow();
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(httpGetBytes(`http://127.0.0.1:${port}/big`, {})).rejects.toThrow(/ECONNREFUSED/);
  });
});
