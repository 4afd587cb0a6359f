import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decide, fingerprint, inputFiles, inspectOutputs, readStamp, writeStamp, type Stamp } from "../../scripts/build-if-changed.mjs";

const run = promisify(execFile);
const script = path.resolve(import.meta.dirname, "../../scripts/build-if-changed.mjs");

// A small checkout: sources, configuration and the outputs of a finished build.
let root: string;
const write = (rel: string, text: string) => {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), text);
};
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "tabgrid-stamp-"));
  write("app/page.tsx", "export default function Page() { return null; }\n");
  write("server/index.ts", "export const x = 1;\n");
  write("worker/kernels/pi.ts", "export const pi = 3;\n");
  write("examples/wasm/sum.wat", "(module)\n");
  write("examples/wasm/sum.wasm", "\0asm");
  write("prisma/schema.prisma", "model A { id Int @id }\n");
  write("next.config.ts", "export default {};\n");
  write("package-lock.json", "{}\n");
  write("tsconfig.json", "{}\n");
  write("tests/unit/a.test.ts", "// a test\n");
  write("docs/a.md", "# docs\n");
  write("generated/prisma/client.ts", "// generated\n");
  write("generated/prisma-pg/client.ts", "// generated\n");
  write(".next/BUILD_ID", "build-1");
  write("dist/server/index.mjs", "// the server's bundle\n");
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const env = { NODE_ENV: "production", PATH: "/bin" };
const hashOf = (options: Parameters<typeof fingerprint>[1] = { env }) => fingerprint(root, options).hash;

describe("the build's fingerprint", () => {
  it("covers sources and configuration, not tests, docs or outputs", () => {
    expect(inputFiles(root)).toEqual([
      "app/page.tsx",
      "examples/wasm/sum.wat",
      "next.config.ts",
      "package-lock.json",
      "prisma/schema.prisma",
      "server/index.ts",
      "tsconfig.json",
      "worker/kernels/pi.ts",
    ]);
  });

  it("is stable while nothing changes, whatever the files' times", () => {
    const before = hashOf();
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(root, "server/index.ts"), later, later);
    expect(hashOf()).toBe(before);
  });

  it("changes when a source, the schema, the lock file or a configuration file changes", () => {
    for (const rel of ["app/page.tsx", "worker/kernels/pi.ts", "prisma/schema.prisma", "package-lock.json", "next.config.ts", "examples/wasm/sum.wat"]) {
      const before = hashOf();
      fs.appendFileSync(path.join(root, rel), "\n");
      expect(hashOf(), rel).not.toBe(before);
    }
  });

  it("changes when a source is added, removed or renamed", () => {
    const before = hashOf();
    write("server/new.ts", "");
    const added = hashOf();
    expect(added).not.toBe(before);
    fs.renameSync(path.join(root, "server/new.ts"), path.join(root, "server/renamed.ts"));
    expect(hashOf()).not.toBe(added);
    fs.rmSync(path.join(root, "server/renamed.ts"));
    expect(hashOf()).toBe(before);
  });

  it("ignores tests, docs, build outputs and the database", () => {
    const before = hashOf();
    write("tests/unit/b.test.ts", "// another\n");
    write("docs/b.md", "more\n");
    write("examples/wasm/sum.wasm", "\0asm-rebuilt");
    write(".next/server/x.js", "");
    write("generated/prisma/more.ts", "");
    write("data/tabgrid.db", "rows");
    write("next-env.d.ts", "// written by next build\n");
    expect(hashOf()).toBe(before);
  });

  it("depends on the Node version, NODE_ENV, NEXT_PUBLIC_* and .env, not on other variables", () => {
    const before = hashOf();
    expect(hashOf({ env, nodeVersion: "v99.0.0" })).not.toBe(before);
    expect(hashOf({ env: { ...env, NODE_ENV: "development" } })).not.toBe(before);
    expect(hashOf({ env: { ...env, NEXT_PUBLIC_X: "1" } })).not.toBe(before);
    expect(hashOf({ env: { ...env, PORT: "4000", DATABASE_URL: "file:x.db" } })).toBe(before);
    write(".env", "NEXT_PUBLIC_X=1\n");
    expect(hashOf()).not.toBe(before);
  });
});

describe("the decision to build", () => {
  const stampFor = (): Stamp => ({ fingerprint: hashOf(undefined), buildId: "build-1", builtAt: "2026-01-01T00:00:00.000Z" });
  const decideNow = (stamp: Stamp | null, force = false) =>
    decide({ force, stamp, current: hashOf(undefined), outputs: inspectOutputs(root) });

  it("skips the build when the sources match the stamp and the outputs are there", () => {
    expect(decideNow(stampFor())).toEqual({ build: false, reason: "sources unchanged since 2026-01-01T00:00:00.000Z" });
  });

  it("builds without a stamp, when forced, or when a source changed", () => {
    const stamp = stampFor();
    expect(decideNow(null)).toMatchObject({ build: true, reason: "no stamp of a successful build" });
    expect(decideNow(stamp, true)).toMatchObject({ build: true, reason: "forced" });
    write("app/page.tsx", "export default function Page() { return 1; }\n");
    expect(decideNow(stamp)).toMatchObject({ build: true, reason: "sources changed since the last build" });
  });

  it("builds when an output is missing or .next was rebuilt by something else", () => {
    const stamp = stampFor();
    fs.rmSync(path.join(root, "examples/wasm/sum.wasm"));
    expect(decideNow(stamp)).toMatchObject({ build: true, reason: "missing examples/wasm/sum.wasm" });
    write("examples/wasm/sum.wasm", "\0asm");
    fs.rmSync(path.join(root, "generated"), { recursive: true });
    expect(decideNow(stamp)).toMatchObject({ build: true, reason: "missing generated/prisma/client.ts, generated/prisma-pg/client.ts" });
    write("generated/prisma/client.ts", "");
    write("generated/prisma-pg/client.ts", "");
    fs.rmSync(path.join(root, "dist/server/index.mjs"));
    expect(decideNow(stamp)).toMatchObject({ build: true, reason: "missing dist/server/index.mjs" });
    write("dist/server/index.mjs", "");
    fs.rmSync(path.join(root, ".next/BUILD_ID"));
    expect(decideNow(stamp).build).toBe(true);
    write(".next/BUILD_ID", "build-2");
    expect(decideNow(stamp)).toMatchObject({ build: true, reason: ".next was built by something else since" });
    write(".next/BUILD_ID", "build-1");
    expect(decideNow(stamp).build).toBe(false);
  });

  it("reads back the stamp it wrote, and no stamp from a broken file", () => {
    expect(readStamp(root)).toBeNull();
    writeStamp(root, stampFor());
    expect(readStamp(root)).toEqual(stampFor());
    write(".next/tabgrid-build-stamp.json", "{ half a file");
    expect(readStamp(root)).toBeNull();
  });
});

describe("the script", () => {
  // --check decides for the repository it lives in; run a copy of it inside the temporary checkout.
  const check = async (extraEnv: Record<string, string> = {}) => {
    fs.copyFileSync(script, path.join(root, "scripts/build-if-changed.mjs"));
    try {
      const { stdout } = await run(process.execPath, [path.join(root, "scripts/build-if-changed.mjs"), "--check"], {
        cwd: root,
        env: { ...process.env, FORCE_BUILD: "", ...extraEnv },
      });
      return { code: 0, stdout };
    } catch (e) {
      const err = e as { code: number; stdout: string };
      return { code: err.code, stdout: err.stdout };
    }
  };

  it("says a build is needed without a stamp, up to date with one, and needed again after an edit or with FORCE_BUILD=1", async () => {
    write("scripts/build-if-changed.mjs", "");
    expect(await check()).toEqual({ code: 1, stdout: "Build needed (no stamp of a successful build)\n" });
    const { stdout } = await run(
      process.execPath,
      ["--input-type=module", "-e", `import { fingerprint, writeStamp } from ${JSON.stringify(path.join(root, "scripts/build-if-changed.mjs"))};
       writeStamp(${JSON.stringify(root)}, { fingerprint: fingerprint(${JSON.stringify(root)}).hash, buildId: "build-1", builtAt: "then" });`],
      { env: { ...process.env, FORCE_BUILD: "" } },
    );
    expect(stdout).toBe("");
    expect(await check()).toEqual({ code: 0, stdout: "Build is up to date (sources unchanged since then)\n" });
    expect(await check({ FORCE_BUILD: "1" })).toEqual({ code: 1, stdout: "Build needed (forced)\n" });
    fs.appendFileSync(path.join(root, "server/index.ts"), "export const y = 2;\n");
    expect(await check()).toEqual({ code: 1, stdout: "Build needed (sources changed since the last build)\n" });
  });
});
