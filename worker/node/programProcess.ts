// Program processes: the headless volunteer runs consumers' programs in child processes (one
// per pool slot, reused across tasks like a thread) so that the kernel can hold their memory.
//
// The memory limit is RLIMIT_DATA. Since Linux 4.7 it counts every private writable mapping
// of the process: the V8 heap as it grows, malloc'd and mmap'd ArrayBuffer backing stores,
// WebAssembly memory as it is committed, whatever JavaScript made them (a typed array copied
// from another, structuredClone, Array.from, memory.grow...), while V8's large PROT_NONE
// address-space reservations do not count. An allocation past it fails inside V8: a
// RangeError the sandbox reports as the memory limit, or a fatal out-of-memory that ends the
// process, which the pool reports the same way ("memory limit of N MiB exceeded"). The
// limit is set once the process has started (its own baseline measured from /proc, then
// `prlimit --pid`), to the baseline plus the task's limit plus PROCESS_MEMORY_ALLOWANCE_MB
// for the runtime's own growth (young generation, compiled code); without prlimit(1), a
// POSIX shell's `ulimit -d` sets it before Node starts, with an estimated baseline.
//
// The process is also started with string code generation disallowed, Node's permission
// model (no file system, no child processes, no workers or addons), an empty environment,
// its working directory at / and no file of this repository loaded: its code arrives as a
// bundle over the IPC channel and is evaluated under a neutral name.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { PoolWorker } from "../runtime/pool";
import type { TaskResult, TaskRun } from "../runtime/runTask";
import { MiB, memoryLimitMessage } from "../sandbox/abi";
import type { ChildReply, ChildRequest } from "./programChild";
import { INPUT_CACHE_BYTES, INPUT_PROTOCOL_ERROR, InputMirror } from "../runtime/inputCache";
import { bundledEntry } from "./bundle";

/** Memory a program process may take beyond its baseline and the task's limit: the runtime's own growth. */
export const PROCESS_MEMORY_ALLOWANCE_MB = 64;
/** Without prlimit the limit is set before Node starts: this stands in for the baseline measured otherwise. */
export const ESTIMATED_BASELINE_MB = 160;

/** How a program process's memory limit is applied. */
export type MemoryLimiter = { kind: "prlimit"; command: string } | { kind: "ulimit"; shell: string };

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && executable(path.join(dir, name))) return path.join(dir, name);
  }
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (executable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** RLIMIT_DATA counts mmap'd memory from Linux 4.7 on; before, only the brk heap. */
function kernelCountsMappings(release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 4 || (major === 4 && minor >= 7);
}

let limiter: MemoryLimiter | null | undefined;

/**
 * What can hold a program process's memory on this machine: prlimit(1) (util-linux), else a
 * POSIX shell's ulimit; undefined off Linux (or before 4.7), where programs fall back to
 * worker threads.
 */
export function findMemoryLimiter(): MemoryLimiter | undefined {
  if (limiter === undefined) {
    limiter = null;
    if (process.platform === "linux" && kernelCountsMappings()) {
      const prlimit = onPath("prlimit");
      if (prlimit) limiter = { kind: "prlimit", command: prlimit };
      else if (executable("/bin/sh")) limiter = { kind: "ulimit", shell: "/bin/sh" };
    }
  }
  return limiter ?? undefined;
}

// ---- the child's code ----------------------------------------------------------------------

/** The child's code, bundled once per process (as the threads' is); Node's internal modules (the stack-trace callback) resolve inside the child. */
function childSource(): Promise<string> {
  return bundledEntry(new URL("./programChild.ts", import.meta.url), { internals: true });
}

/**
 * The child's whole command line program: wait for the bundle, evaluate it under a neutral
 * file name (so no stack trace in the child can show where anything is on the disk).
 */
const BOOT = String.raw`process.once("message", (m) => {
  if (!m || m.type !== "code" || typeof m.source !== "string") process.exit(70);
  const run = require("node:vm").runInThisContext("(function (require, module, exports) {\"use strict\";\n" + m.source + "\n})", { filename: "tabgrid-sandbox.js" });
  const module = { exports: {} };
  run(require, module, module.exports);
});`;

// ---- flags ---------------------------------------------------------------------------------

/** Node's permission model: --permission from 22.13 and 23.5, --experimental-permission before. */
function permissionFlag(version = process.versions.node): string {
  const [major, minor] = version.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 5) || (major === 22 && minor >= 13) ? "--permission" : "--experimental-permission";
}

/** Hardening flags stay on unless this Node refused one (then every later process goes without). */
let hardeningRefused = false;

function nodeFlags(heapMb: number, hardening: boolean): string[] {
  return [
    `--max-old-space-size=${heapMb}`,
    "--disallow-code-generation-from-strings",
    "--no-warnings",
    ...(hardening ? ["--expose-internals", permissionFlag()] : []),
  ];
}

/** The little of the environment a program may see: its time zone and locale, as in a browser. */
function childEnv(): NodeJS.ProcessEnv {
  const env = {} as NodeJS.ProcessEnv;
  for (const k of ["TZ", "LANG", "LC_ALL"]) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return env;
}

function vmDataBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmData:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error("VmData not found");
  return Number(m[1]) * 1024;
}

function prlimit(command: string, pid: number, dataBytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, ["--pid", String(pid), `--data=${dataBytes}:${dataBytes}`, "--core=0:0"], { timeout: 10_000 }, (e) => (e ? reject(e) : resolve()));
  });
}

function withdrawnError(): Error {
  const e = new Error("the task was given to another worker");
  e.name = "AbortError";
  return e;
}

/** What a dead program process tells: the memory limit (V8's fatal out-of-memory), or just that it died. */
function exitError(code: number | null, signal: NodeJS.Signals | null, stderr: string, memoryLimitBytes: number): Error {
  if (/out of memory|allocation failed|bad_alloc|cannot allocate|failed to reserve/i.test(stderr)) return new Error(memoryLimitMessage(memoryLimitBytes));
  return new Error(`the program's process stopped unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`);
}

// ---- the process ---------------------------------------------------------------------------

export interface ProgramProcessOptions {
  memoryLimitBytes: number;
  /** V8 old-generation limit, in MiB. */
  heapMb: number;
  limiter: MemoryLimiter;
}

interface Pending {
  resolve(r: TaskResult): void;
  reject(e: unknown): void;
  onProgress?: (fraction: number) => void;
  /** The child no longer had the input: send it again, or fail a child that keeps asking. */
  missing?: () => void;
}

/** Starts a program process (it becomes usable once its code is in and its limit applied). */
export function startProgramProcess(opts: ProgramProcessOptions): PoolWorker {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let child: ChildProcess | undefined;
  let dead: Error | undefined;
  let terminated = false;

  const failAll = (e: Error) => {
    dead ??= e;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };

  // What the process may take beyond its own baseline: the task's limit, the runtime's growth, the inputs it keeps.
  const beyondBaseline = opts.memoryLimitBytes + PROCESS_MEMORY_ALLOWANCE_MB * MiB + INPUT_CACHE_BYTES;
  const start = (hardening: boolean): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const args = [...nodeFlags(opts.heapMb, hardening), "-e", BOOT];
      let command = process.execPath;
      let argv = args;
      if (opts.limiter.kind === "ulimit") {
        const kb = Math.ceil((ESTIMATED_BASELINE_MB * MiB + beyondBaseline) / 1024);
        command = opts.limiter.shell;
        argv = ["-c", 'ulimit -c 0 2>/dev/null; ulimit -d "$0" && exec "$@"', String(kb), process.execPath, ...args];
      }
      const c: ChildProcess = spawn(command, argv, {
        stdio: ["ignore", "ignore", "pipe", "ipc"], serialization: "advanced", env: childEnv(), cwd: "/", windowsHide: true,
      });
      child = c;
      let ready = false;
      let readying = false;
      let stderr = "";
      c.stderr?.setEncoding("utf8");
      c.stderr?.on("data", (s: string) => {
        stderr = (stderr + s).slice(-8192);
      });
      c.on("error", (e) => {
        const err = new Error(`could not start a program process: ${e.message}`);
        if (!ready) reject(err);
        failAll(err);
      });
      // "close" comes after the streams end, so stderr is complete.
      c.on("close", (code, signal) => {
        const err = terminated ? new Error("Program process terminated") : exitError(code, signal, stderr, opts.memoryLimitBytes);
        if (!ready) {
          if (!terminated && hardening && /bad option|not allowed|unknown|unrecognized/i.test(stderr)) {
            hardeningRefused = true;
            start(false).then(resolve, reject);
            return;
          }
          reject(terminated ? err : new Error(`the program process could not start: ${err.message}`));
        }
        failAll(err);
      });
      c.on("message", (m: ChildReply) => {
        if (!m || typeof m !== "object") return;
        if (m.type === "ready") {
          if (ready || readying) return;
          readying = true;
          const limited = opts.limiter.kind === "prlimit"
            ? (async () => prlimit((opts.limiter as { command: string }).command, c.pid!, vmDataBytes(c.pid!) + beyondBaseline))()
            : Promise.resolve();
          limited.then(
            () => {
              ready = true;
              resolve();
            },
            (e: Error) => {
              // Never run a program without its limit.
              reject(new Error(`could not limit the program process's memory: ${e.message}`));
              c.kill("SIGKILL");
            },
          );
          return;
        }
        const p = pending.get(m.id);
        if (!p) return;
        if (m.type === "progress") p.onProgress?.(m.fraction);
        else if (m.type === "done") {
          pending.delete(m.id);
          p.resolve(m.result);
        } else if (m.type === "fail") {
          pending.delete(m.id);
          p.reject(new Error(String(m.message)));
        } else if (m.type === "missing") {
          p.missing?.();
        }
      });
      childSource().then(
        (source) => {
          // A process that already died has no channel: "close" says why.
          if (!c.connected) return;
          try {
            c.send({ type: "code", source }, (e) => e && reject(e));
          } catch (e) {
            reject(e);
          }
        },
        (e: Error) => {
          reject(new Error(`could not prepare the program process: ${e.message}`));
          c.kill("SIGKILL");
        },
      );
    });

  // What the child holds of inputs.
  const inputs = new InputMirror();
  let ready = false;
  const started = start(!hardeningRefused);
  started.then(() => (ready = true), (e: Error) => failAll(e));

  return {
    api: {
      run(t: TaskRun, onProgress?: (fraction: number) => void, withdraw?: AbortSignal): Promise<TaskResult> {
        return started.then(
          () =>
            new Promise<TaskResult>((resolve, reject) => {
              if (dead || !child) return reject(dead ?? new Error("the program process is not running"));
              if (withdraw?.aborted) return reject(withdrawnError());
              const c = child;
              const id = nextId++;
              // send() throws at once on a closed channel, and reports other failures later.
              const send = (request: ChildRequest) => c.send(request, (e) => {
                if (!e) return;
                pending.delete(id);
                reject(e);
              });
              const req = inputs.request(t);
              pending.set(id, {
                resolve, reject, onProgress,
                missing: () => {
                  if (req.missed()) return send({ type: "run", id, task: t });
                  pending.delete(id);
                  reject(new Error(INPUT_PROTOCOL_ERROR));
                },
              });
              if (req.cached) send({ type: "run", id, task: { ...t, input: undefined }, inputKey: req.key, cached: true });
              else send({ type: "run", id, task: t, inputKey: req.key });
              // Taken back before it ran: the child drops it if it still waits (what it sends for it is not read).
              withdraw?.addEventListener("abort", () => {
                if (!pending.delete(id)) return;
                reject(withdrawnError());
                if (c.connected) c.send({ type: "drop", id } satisfies ChildRequest, () => {});
              }, { once: true });
            }),
        );
      },
    },
    // The child runs its tasks one after another, in the order they came (programChild.ts).
    accepts: () => ready && !dead && child?.connected === true,
    terminate() {
      terminated = true;
      child?.kill("SIGKILL");
      failAll(new Error("Program process terminated"));
    },
    alive: () => dead === undefined,
  };
}
