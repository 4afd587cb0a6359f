// Bundles the server (server/index.ts and everything of ours it imports) into ES modules,
// dist/server/index.mjs and the chunks it loads on demand, that plain `node` runs: no
// TypeScript loader in the process (tsx's loader thread and compile cache cost ~40 MB of
// memory and a slower start). Packages stay outside the bundle and are imported from
// node_modules as usual. What the sources import dynamically (the S3 blob store, ~24 MB of
// SDK) stays a chunk of its own, loaded only when needed.
//
// Our code finds files beside its sources at run time (`new URL("./dbWriterThread.ts",
// import.meta.url)`, package.json, Prisma's engine files, the thread entries). In the bundle
// every module would share the bundle's own URL, so each module's `import.meta.url` is
// rewritten to its source file's URL, computed relative to the bundle (the checkout may move).
// Thread and child entries are found that way and bundled on their own when first started
// (worker/node/bundle.ts).
//
//   node scripts/build-server.mjs [outdir]     (default dist/server)
import esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** The entry of the default build, relative to the checkout: what `npm run serve` runs. */
export const SERVER_BUNDLE = path.join("dist", "server", "index.mjs");

/**
 * Environment the server's process starts with, unless the caller's own environment sets it
 * (`npm run serve` sets the same in package.json). glibc gives each thread that allocates its
 * own malloc arena (up to 8 per core): the writer thread, V8's GC helpers and libuv's pool each
 * kept freed memory in theirs, 11 arenas holding ~53 MB at the bench's peak. Two arenas cost
 * ~25 MB less at that peak and no measurable throughput (docs/performance.md). It is read when
 * the process starts, so it cannot be set from inside. Other C libraries ignore it.
 */
export const SERVER_PROCESS_ENV = Object.freeze({ MALLOC_ARENA_MAX: "2" });

/** `env` with SERVER_PROCESS_ENV's defaults under it. */
export function serverProcessEnv(env) {
  return { ...SERVER_PROCESS_ENV, ...env };
}

/** Rewrites each of our modules' `import.meta.url` to its source file's URL. */
function sourceUrls(outDir) {
  return {
    name: "source-import-meta-url",
    setup(build) {
      build.onLoad({ filter: /\.(m?[jt]sx?)$/ }, async (args) => {
        if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        const source = await fs.promises.readFile(args.path, "utf8");
        if (!source.includes("import.meta.url")) return undefined;
        const rel = path.relative(outDir, args.path).split(path.sep).join("/");
        const contents = source.replaceAll("import.meta.url", `new URL(${JSON.stringify(rel)}, import.meta.url).href`);
        const ext = path.extname(args.path).slice(1);
        return { contents, loader: ext.startsWith("m") ? ext.slice(1) : ext, resolveDir: path.dirname(args.path) };
      });
    },
  };
}

/**
 * Packages stay outside the bundle. Node resolves an ES module's deep import of a package
 * without an "exports" map only by its exact file name (`nodemailer/lib/smtp-transport` is a
 * directory), so such imports point at the file esbuild resolves, relative to the bundle.
 */
function externalPackages(outDir) {
  return {
    name: "external-packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData?.inner || args.path.startsWith("node:")) return undefined;
        const parts = args.path.split("/");
        const name = args.path.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
        if (name === args.path) return { path: args.path, external: true };
        const found = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: { inner: true } });
        if (found.errors.length) return { errors: found.errors };
        let dir = path.dirname(found.path);
        while (!fs.existsSync(path.join(dir, "package.json")) || JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).name !== name) {
          const up = path.dirname(dir);
          if (up === dir) return { path: args.path, external: true };
          dir = up;
        }
        if (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).exports) return { path: args.path, external: true };
        return { path: path.relative(outDir, found.path).split(path.sep).join("/"), external: true };
      });
    },
  };
}

/**
 * Builds the bundle into `outDir` (about 0.3 s) and returns its entry's absolute path. It must
 * stay inside the checkout: packages are found from its node_modules. Chunks are named by
 * their content and old ones are left in place, so a server still running from an earlier
 * build finds the chunks it has yet to load.
 */
export async function buildServer(outDir = path.dirname(path.join(root, SERVER_BUNDLE))) {
  await esbuild.build({
    entryPoints: { index: path.join(root, "server", "index.ts") },
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    splitting: true,
    chunkNames: "chunk-[hash]",
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    logLevel: "warning",
    tsconfig: path.join(root, "tsconfig.json"),
    plugins: [externalPackages(outDir), sourceUrls(outDir)],
  });
  return path.join(outDir, "index.mjs");
}

/** Own bundles of processes that are gone (a test worker is killed, and no exit hook runs). */
function removeOrphans(dist) {
  let names = [];
  try {
    names = fs.readdirSync(dist);
  } catch {}
  for (const name of names) {
    const pid = Number(/^[a-z]+-(\d+)$/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if (e.code === "ESRCH") fs.rmSync(path.join(dist, name), { recursive: true, force: true });
    }
  }
}

/**
 * A bundle of the sources as they are now for this process alone (tests, the bench), in
 * dist/<tag>-<pid>/, so that neither runs a stale build nor rewrites the one `npm run serve`
 * runs. Removed when the process exits.
 */
let own;
export function ownServerBundle(tag) {
  return (own ??= (async () => {
    const dist = path.join(root, "dist");
    const out = path.join(dist, `${tag}-${process.pid}`);
    removeOrphans(dist);
    process.once("exit", () => fs.rmSync(out, { recursive: true, force: true }));
    return buildServer(out);
  })().catch((e) => {
    own = undefined;
    throw e;
  }));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildServer(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`server bundle: ${path.relative(root, out)}`);
}
