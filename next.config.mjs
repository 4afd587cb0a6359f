// A plain ES module, not next.config.ts: Next compiles a TypeScript config with its native SWC
// binding on every start, which keeps ~25 MB of native code and two runtime threads in the
// server's process for nothing else.
/** @type {import("next").NextConfig} */
const config = {
  // Native and WASM-backed packages are loaded by Node at run time, not bundled.
  serverExternalPackages: ["better-sqlite3", "@prisma/adapter-better-sqlite3", "pg", "@prisma/adapter-pg", "@prisma/client"],
  poweredByHeader: false,
};

export default config;
