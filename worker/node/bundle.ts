// The code of a worker thread or child process, bundled from its entry module into one
// CommonJS script, once per process per entry: the thread runs it with `eval` (the child
// receives it in a message). Started from its TypeScript sources through tsx instead, each
// thread would register a loader and compile our sources again: a kernel thread then cost
// ~45 MB of memory and ~0.8 s to its first task, bundled ~28 MB and ~0.5 s
// (docs/performance.md, "Threads run bundled code").
import fs from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

export interface BundleOptions {
  /**
   * Packages required at run time from node_modules instead of bundled, by their absolute
   * path (eval'd code has no directory to resolve from): native addons, and packages that
   * load files beside their own code (QuickJS's WebAssembly).
   */
  packages?: string[];
  /** Node's internal modules (`internal/...`, with --expose-internals) stay requires. */
  internals?: boolean;
}

/** Spelt in two parts: the server's own bundler rewrites that expression wherever it is written. */
const IMPORT_META_URL = ["import.meta", "url"].join(".");

const bundles = new Map<string, Promise<string>>();

/** `entry`'s code as one script; a failed build is tried again by the next call. */
export function bundledEntry(entry: URL, opts: BundleOptions = {}): Promise<string> {
  const key = entry.href;
  let code = bundles.get(key);
  if (!code) {
    code = build(entry, opts);
    bundles.set(key, code);
    code.catch(() => bundles.delete(key));
  }
  return code;
}

async function build(entry: URL, opts: BundleOptions): Promise<string> {
  let file = fileURLToPath(entry);
  // Compiled to JavaScript beside its sources (a published build), the entry is a .js file.
  if (!fs.existsSync(file)) file = file.replace(/\.ts$/, ".js");
  const resolve = createRequire(file).resolve;
  const names = opts.packages ?? [];
  const out = await esbuild.build({
    entryPoints: [file],
    bundle: true, platform: "node", format: "cjs", target: "node20", write: false, logLevel: "silent",
    // The entry's own URL for every module's import.meta.url (createRequire needs one).
    define: { [IMPORT_META_URL]: JSON.stringify(entry.href) },
    external: opts.internals ? ["internal/*"] : [],
    plugins: names.length ? [{
      name: "required-packages",
      setup(b) {
        const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})(/.*)?$`);
        b.onResolve({ filter }, (args) => ({ path: resolve(args.path), external: true }));
      },
    }] : [],
  });
  return out.outputFiles[0].text;
}
