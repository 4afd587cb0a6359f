import pg from "pg";
import { databaseKind, DEFAULT_DATABASE_URL, redactUrl } from "../server/store/databaseUrl";

// Before `prisma migrate deploy`: a PostgreSQL database named in DATABASE_URL that does not
// exist yet is created (as `createdb` would), so `npm start` works on a bare server too.
// SQLite creates its file by itself.
const url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
if (databaseKind(url) === "postgres") {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!name) throw new Error(`DATABASE_URL names no database: ${redactUrl(url)}`);
  const probe = new pg.Client({ connectionString: url });
  const missing = await probe.connect().then(
    () => false,
    (e: Error & { code?: string }) => {
      if (e.code === "3D000") return true; // invalid_catalog_name: no such database
      throw new Error(`cannot reach PostgreSQL at ${redactUrl(url)}: ${e.message}`);
    },
  );
  await probe.end().catch(() => undefined);
  if (missing) {
    const maintenance = new URL(url);
    maintenance.pathname = "/postgres";
    const admin = new pg.Client({ connectionString: maintenance.toString() });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      console.log(`created database ${name}`);
    } finally {
      await admin.end();
    }
  }
}
