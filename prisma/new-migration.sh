#!/usr/bin/env bash
# Writes a migration for each provider as the diff between the schema at HEAD and the working
# copy (`prisma migrate dev` can't run on the driver adapters):
#   prisma/migrations/<timestamp>_<name>/migration.sql           (SQLite)
#   prisma/postgres/migrations/<timestamp>_<name>/migration.sql  (PostgreSQL, from the derived schema)
# Edit prisma/schema.prisma only; the PostgreSQL schema is derived from it here. A new column of
# millicredits should be BIGINT in the PostgreSQL migration (Int maps to int4): edit it by hand.
set -euo pipefail
name=${1:?usage: npm run db:migration -- <name>}
node scripts/prisma-schemas.mjs
stamp=$(date -u +%Y%m%d%H%M%S)
prev=$(mktemp -d)
trap 'rm -rf "$prev"' EXIT
git show HEAD:prisma/schema.prisma > "$prev/sqlite.prisma"
node --input-type=module -e '
  import fs from "node:fs";
  const { postgresSchema } = await import("./scripts/prisma-schemas.mjs");
  fs.writeFileSync(process.argv[2], postgresSchema(fs.readFileSync(process.argv[1], "utf8")));
' "$prev/sqlite.prisma" "$prev/postgres.prisma"
for target in "prisma:$prev/sqlite.prisma:prisma/schema.prisma" "prisma/postgres:$prev/postgres.prisma:prisma/postgres/schema.prisma"; do
  IFS=: read -r root from to <<< "$target"
  dir="$root/migrations/${stamp}_${name}"
  mkdir -p "$dir"
  npx prisma migrate diff --from-schema-datamodel "$from" --to-schema-datamodel "$to" --script > "$dir/migration.sql"
  echo "wrote $dir/migration.sql"
done
