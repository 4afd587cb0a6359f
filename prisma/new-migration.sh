#!/usr/bin/env bash
# Writes prisma/migrations/<timestamp>_<name>/migration.sql as the diff between the schema
# at HEAD and the working copy (`prisma migrate dev` can't run on the SQLite adapter).
set -euo pipefail
name=${1:?usage: npm run db:migration -- <name>}
prev=$(mktemp)
git show HEAD:prisma/schema.prisma > "$prev"
dir="prisma/migrations/$(date -u +%Y%m%d%H%M%S)_${name}"
mkdir -p "$dir"
npx prisma migrate diff --from-schema-datamodel "$prev" --to-schema-datamodel prisma/schema.prisma --script > "$dir/migration.sql"
rm -f "$prev"
echo "wrote $dir/migration.sql"
