// The sandbox iframe's document (served by server/http/sandbox.ts at SANDBOX_HOST_PATH, and
// embedded by worker/browser/sandboxPool.ts as <iframe sandbox="allow-scripts">): an opaque
// origin (no cookies, no storage, no access to the app's window) under a CSP that allows
// this one inline script (by hash), blob: workers and WebAssembly, and no network at all.
//
// Its script only relays: the parent hands it a MessagePort and the runner's source
// (worker/sandbox/browserWorker.ts, bundled), and then asks it over that port to start
// workers from a blob: URL of the runner, to pass messages to and from them, to terminate
// them, and to answer pings (the parent's way to notice that the sandbox's process died,
// which is what a program that exhausts its memory does to it). Workers created from a
// blob: URL inherit this document's CSP, so programs cannot reach the network either.
// Each new worker also gets one end of a MessageChannel whose other end goes to the parent
// ("spawned"): tasks and their answers then travel between the parent and the worker directly,
// not through this document's thread (a hop that cost milliseconds a task on a loaded machine).

export const SANDBOX_HOST_PATH = "/sandbox/host";
export const SANDBOX_RUNNER_PATH = "/sandbox/runner.js";

/** Kept byte-for-byte stable: the CSP names it by its sha256. */
export const SANDBOX_HOST_SCRIPT = `(() => {
  "use strict";
  let port = null;
  let runnerUrl = null;
  const workers = new Map();
  const send = (m) => port.postMessage(m);
  addEventListener("message", (e) => {
    if (port || e.source !== parent || !e.ports || !e.ports[0]) return;
    port = e.ports[0];
    port.onmessage = (ev) => {
      const m = ev.data;
      if (!m || typeof m !== "object") return;
      if (m.t === "init") {
        if (!runnerUrl && typeof m.runner === "string") runnerUrl = URL.createObjectURL(new Blob([m.runner], { type: "text/javascript" }));
        send({ t: "ready" });
      } else if (m.t === "spawn") {
        if (!runnerUrl || workers.has(m.w)) return;
        let w;
        try {
          w = new Worker(runnerUrl, { name: "tabgrid-program-" + m.w });
        } catch (err) {
          send({ t: "error", w: m.w, message: "could not start a worker: " + ((err && err.message) || err) });
          return;
        }
        workers.set(m.w, w);
        w.onmessage = (ev2) => {
          try { send({ t: "msg", w: m.w, d: ev2.data }); } catch (err) { send({ t: "error", w: m.w, message: "the worker sent a message that cannot be passed on" }); }
        };
        w.onerror = (ev2) => {
          ev2.preventDefault();
          send({ t: "error", w: m.w, message: ev2.message || "the worker failed" });
        };
        w.onmessageerror = () => send({ t: "error", w: m.w, message: "the worker sent an unreadable message" });
        const direct = new MessageChannel();
        w.postMessage({ t: "port" }, [direct.port1]);
        port.postMessage({ t: "spawned", w: m.w }, [direct.port2]);
      } else if (m.t === "post") {
        const w = workers.get(m.w);
        if (w) w.postMessage(m.d);
      } else if (m.t === "kill") {
        const w = workers.get(m.w);
        if (w) {
          w.terminate();
          workers.delete(m.w);
        }
      } else if (m.t === "ping") {
        send({ t: "pong", n: m.n });
      }
    };
  });
})();`;

export function sandboxHostHtml(): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Tabgrid sandbox</title></head><body><script>${SANDBOX_HOST_SCRIPT}</script></body></html>`;
}

/** The CSP of the host document, given the base64 sha256 of SANDBOX_HOST_SCRIPT. */
export function sandboxHostCsp(scriptSha256Base64: string): string {
  return [
    "default-src 'none'",
    `script-src 'sha256-${scriptSha256Base64}' blob: 'wasm-unsafe-eval'`,
    "worker-src blob:",
    "connect-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
  ].join("; ");
}
