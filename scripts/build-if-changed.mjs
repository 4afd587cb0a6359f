// Builds the app only when one of the build's inputs changed since the last successful build.
//
//   node scripts/build-if-changed.mjs           build if needed (`npm start`, `npm test`)
//   node scripts/build-if-changed.mjs --force   always build (`npm run build`; FORCE_BUILD=1 too)
//   node scripts/build-if-changed.mjs --check   print the decision; exit 0 if up to date, 1 if not
//
// The build is: `prisma generate` (into generated/), scripts/build-examples.mjs (examples/**/*.wat
// to .wasm), `next build` (into .next/) and scripts/build-server.mjs (the server's bundle,
// dist/server/index.mjs, which `npm run serve` runs). Its inputs are fingerprinted by content (sha256 over a
// plain file walk, so a checkout without git works too), with the Node version, the platform and
// the environment variables Next reads at build time. The stamp, .next/tabgrid-build-stamp.json,
// is removed before a build and written only after the build succeeded; a missing or stale stamp,
// or a .next, generated/ or .wasm that is missing, means a build.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const STAMP = path.join(".next", "tabgrid-build-stamp.json");

/** Folders whose every file is an input (generated .wasm beside a .wat excepted). */
const INPUT_DIRS = ["app", "server", "worker", "cli", "bin", "examples", "public", "scripts"];
/** Single files that are inputs when present. */
const INPUT_FILES = [
  "package.json",
  "package-lock.json",
  // What npm actually installed; changes when node_modules is reinstalled or altered.
  path.join("node_modules", ".package-lock.json"),
  "tsconfig.json",
  "prisma.config.ts",
  path.join("prisma", "schema.prisma"),
  path.join("prisma", "postgres", "schema.prisma"),
];
/** Root files matched by name: Next's and PostCSS's configuration, and the .env files Next loads. */
const INPUT_ROOT_PATTERN = /^(next\.config\.|postcss\.config\.|\.env$|\.env\.)/;
const SKIP_DIRS = new Set(["node_modules", ".next", ".git", "generated", "data", "reports", "tmp", "test-results"]);
/** Environment variables that change what `next build` produces. */
const isBuildEnv = (name) => name === "NODE_ENV" || name.startsWith("NEXT_PUBLIC_");

function walk(root, rel, out) {
  let entries;
  try {
    entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
  } catch {
    return;
  }
  const names = new Set(entries.map((e) => e.name));
  for (const e of entries) {
    const child = path.join(rel, e.name);
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) walk(root, child, out);
    } else if (e.isFile()) {
      // A .wasm built from the .wat beside it is an output of the build, not an input.
      if (e.name.endsWith(".wasm") && names.has(e.name.replace(/\.wasm$/, ".wat"))) continue;
      if (e.name.endsWith(".tsbuildinfo")) continue;
      out.push(child);
    }
  }
}

/** The build's input files under root, relative, with "/" separators, sorted. */
export function inputFiles(root) {
  const files = [];
  for (const dir of INPUT_DIRS) walk(root, dir, files);
  for (const file of INPUT_FILES) if (fs.existsSync(path.join(root, file))) files.push(file);
  for (const name of fs.readdirSync(root)) {
    if (INPUT_ROOT_PATTERN.test(name) && fs.statSync(path.join(root, name)).isFile()) files.push(name);
  }
  return [...new Set(files.map((f) => f.split(path.sep).join("/")))].sort();
}

/**
 * The sha256 of everything the build depends on: each input file's path and content, the Node
 * version, the platform and the build's environment variables.
 */
export function fingerprint(root, { env = process.env, nodeVersion = process.version, platform = `${process.platform}-${process.arch}` } = {}) {
  const hash = createHash("sha256");
  hash.update(`node ${nodeVersion} ${platform}\n`);
  for (const name of Object.keys(env).filter(isBuildEnv).sort()) hash.update(`env ${name}=${env[name]}\n`);
  const files = inputFiles(root);
  for (const file of files) {
    const content = fs.readFileSync(path.join(root, file));
    hash.update(`file ${file} ${content.length}\n`);
    hash.update(content);
  }
  return { hash: hash.digest("hex"), files: files.length };
}

export function readStamp(root) {
  try {
    const stamp = JSON.parse(fs.readFileSync(path.join(root, STAMP), "utf8"));
    return typeof stamp?.fingerprint === "string" ? stamp : null;
  } catch {
    return null;
  }
}

export function writeStamp(root, stamp) {
  fs.writeFileSync(path.join(root, STAMP), JSON.stringify(stamp, null, 2) + "\n");
}

/** What the last build left behind: Next's build id, and what is missing of its outputs. */
export function inspectOutputs(root) {
  let buildId = null;
  try {
    buildId = fs.readFileSync(path.join(root, ".next", "BUILD_ID"), "utf8").trim();
  } catch {}
  const missing = [];
  if (!buildId) missing.push(".next/BUILD_ID");
  if (!fs.existsSync(path.join(root, "dist", "server", "index.mjs"))) missing.push("dist/server/index.mjs");
  for (const client of ["prisma", "prisma-pg"]) {
    if (!fs.existsSync(path.join(root, "generated", client, "client.ts"))) missing.push(`generated/${client}/client.ts`);
  }
  const wats = [];
  walk(root, "examples", wats);
  for (const wat of wats.filter((f) => f.endsWith(".wat"))) {
    const wasm = wat.replace(/\.wat$/, ".wasm");
    if (!fs.existsSync(path.join(root, wasm))) missing.push(wasm.split(path.sep).join("/"));
  }
  return { buildId, missing };
}

/**
 * Whether to build. Pure: `stamp` is the last successful build's stamp (or null), `current` the
 * sources' fingerprint now, `outputs` what inspectOutputs found.
 */
export function decide({ force = false, stamp, current, outputs }) {
  if (force) return { build: true, reason: "forced" };
  if (!stamp) return { build: true, reason: "no stamp of a successful build" };
  if (outputs.missing.length > 0) return { build: true, reason: `missing ${outputs.missing.join(", ")}` };
  if (stamp.buildId !== outputs.buildId) return { build: true, reason: ".next was built by something else since" };
  if (stamp.fingerprint !== current) return { build: true, reason: "sources changed since the last build" };
  return { build: false, reason: `sources unchanged since ${stamp.builtAt}` };
}

function run(root, command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit", env, shell: process.platform === "win32" });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function main() {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const args = process.argv.slice(2);
  const force = args.includes("--force") || process.env.FORCE_BUILD === "1";
  const started = Date.now();
  const current = fingerprint(root);
  const decision = decide({ force, stamp: readStamp(root), current: current.hash, outputs: inspectOutputs(root) });
  if (args.includes("--check")) {
    console.log(decision.build ? `Build needed (${decision.reason})` : `Build is up to date (${decision.reason})`);
    process.exit(decision.build ? 1 : 0);
  }
  if (!decision.build) {
    console.log(`Build is up to date (${decision.reason}; checked ${current.files} files in ${Date.now() - started} ms). FORCE_BUILD=1 rebuilds.`);
    return;
  }
  console.log(`Building… (${decision.reason})`);
  fs.rmSync(path.join(root, STAMP), { force: true });
  const bin = (name) => path.join(root, "node_modules", ".bin", name);
  run(root, "npm", ["run", "--silent", "db:generate"]);
  run(root, process.execPath, [path.join(root, "scripts", "build-examples.mjs")]);
  run(root, bin("next"), ["build"], { ...process.env, NEXT_TELEMETRY_DISABLED: "1" });
  run(root, process.execPath, [path.join(root, "scripts", "build-server.mjs")]);
  // Sources edited during the build leave no stamp, so the next start builds them.
  const after = fingerprint(root);
  const { buildId } = inspectOutputs(root);
  if (after.hash !== current.hash) {
    console.log("Sources changed during the build: not stamped, the next start builds again.");
    return;
  }
  writeStamp(root, { fingerprint: current.hash, buildId, builtAt: new Date().toISOString(), node: process.version });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
