#!/usr/bin/env node
// One model source, two providers: prisma/schema.prisma (SQLite, the default) is the source,
// and prisma/postgres/schema.prisma is derived from it here, because Prisma cannot take its
// `provider` from the environment and a migrations folder belongs to one provider.
// `node scripts/prisma-schemas.mjs` writes the PostgreSQL schema; `--check` fails if the
// committed one is stale (the unit tests run it).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(import.meta.dirname, "..");
const source = path.join(root, "prisma", "schema.prisma");
const target = path.join(root, "prisma", "postgres", "schema.prisma");

export function postgresSchema(text) {
  const swap = (from, to) => {
    if (!text.includes(from)) throw new Error(`prisma/schema.prisma no longer contains ${JSON.stringify(from)}`);
    text = text.replace(from, to);
  };
  swap('provider = "sqlite"', 'provider = "postgresql"');
  swap('url      = "file:../data/tabgrid.db"', 'url      = "postgresql://127.0.0.1:5432/tabgrid"');
  swap('output          = "../generated/prisma"', 'output          = "../../generated/prisma-pg"');
  return (
    "// GENERATED from prisma/schema.prisma by scripts/prisma-schemas.mjs: edit that file, then run\n" +
    "// `node scripts/prisma-schemas.mjs` and `npm run db:migration -- <name>`.\n" +
    text
  );
}

function main() {
  const want = postgresSchema(fs.readFileSync(source, "utf8"));
  if (process.argv.includes("--check")) {
    const have = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
    if (have !== want) {
      console.error("prisma/postgres/schema.prisma is stale: run `node scripts/prisma-schemas.mjs`");
      process.exit(1);
    }
  } else {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, want);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
