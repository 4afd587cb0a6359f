import type { NextConfig } from "next";

const config: NextConfig = {
  // Native and WASM-backed packages are loaded by Node at run time, not bundled.
  serverExternalPackages: ["better-sqlite3", "@prisma/adapter-better-sqlite3", "pg", "@prisma/adapter-pg", "@prisma/client"],
  poweredByHeader: false,
};

export default config;
