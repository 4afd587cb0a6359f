import fs from "node:fs";
import { parse, UsageError } from "../args";
import { createPrisma, type Db } from "../../server/store/prisma";
import { databaseFile, databaseKind, redactUrl } from "../../server/store/databaseUrl";
import { createUser } from "../../server/services/users/users";
import { grantCredits } from "../../server/services/users/adminUsers";
import { createApiKey } from "../../server/auth/apiKeys";
import { parseEnv } from "../../server/env";
import { MILLI, toCredits } from "../../server/services/credits/accounts";

const USAGE = `usage: tabgrid admin create-user --email E --password P [--admin] [--api-key] [--json]
       tabgrid admin grant --email E --credits N [--memo TEXT] [--json]`;

/** Works on the database directly (DATABASE_URL), like a createsuperuser command. */
export async function admin(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "create-user") return createUserCommand(rest);
  if (sub === "grant") return grantCommand(rest);
  throw new UsageError(USAGE);
}

async function createUserCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    email: { type: "string" }, password: { type: "string" }, admin: { type: "boolean", default: false },
    "api-key": { type: "boolean", default: false }, json: { type: "boolean", default: false },
  });
  if (!values.email || !values.password) throw new UsageError("--email and --password are required");
  const env = parseEnv();
  return withDatabase(env.DATABASE_URL, async (db) => {
    const user = await createUser(db, { email: values.email!, password: values.password!, admin: values.admin }, Math.round(env.STARTER_CREDITS * MILLI));
    const key = values["api-key"] ? (await createApiKey(db, user.id, "created by tabgrid admin")).key : undefined;
    if (values.json) console.log(JSON.stringify({ id: user.id, email: user.email, role: user.role, ...(key ? { apiKey: key } : {}) }));
    else {
      console.log(`created ${user.role} ${user.email} (${user.id})`);
      if (key) console.log(`API key (shown once): ${key}`);
    }
    return 0;
  });
}

async function grantCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    email: { type: "string" }, credits: { type: "string" }, memo: { type: "string" }, json: { type: "boolean", default: false },
  });
  if (!values.email || values.credits === undefined) throw new UsageError("--email and --credits are required");
  const credits = Number(values.credits);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(values.credits) || !Number.isFinite(credits)) throw new UsageError(`--credits must be a number of credits, not "${values.credits}"`);
  const env = parseEnv();
  return withDatabase(env.DATABASE_URL, async (db) => {
    const g = await grantCredits(db, { email: values.email! }, credits, values.memo ?? "granted by an admin");
    if (values.json) console.log(JSON.stringify({ userId: g.userId, email: g.email, granted: toCredits(g.granted), balance: toCredits(g.balance) }));
    else console.log(`granted ${toCredits(g.granted)} credits to ${g.email}; balance ${toCredits(g.balance)}`);
    return 0;
  });
}

/** Runs `fn` on the database at `url`, saying plainly when there is none yet or it was never migrated. */
async function withDatabase(url: string, fn: (db: Db) => Promise<number>): Promise<number> {
  const setUp = `start the server once with this DATABASE_URL (npm start creates and migrates its database), or run npm run db:migrate`;
  // Opening a SQLite file that is not there would create an empty one: say so instead.
  if (databaseKind(url) === "sqlite" && !fs.existsSync(databaseFile(url))) throw new Error(`no database at ${redactUrl(url)}: ${setUp}`);
  const db = createPrisma(url);
  try {
    return await fn(db).catch((e: Error & { code?: string }) => {
      // Prisma's codes: P1003, no such database; P2021, a missing table (a database never migrated).
      if (e.code === "P1003") throw new Error(`there is no database ${redactUrl(url)}: ${setUp}`);
      if (e.code === "P2021") throw new Error(`the database at ${redactUrl(url)} has no Tabgrid tables yet: ${setUp}`);
      throw e;
    });
  } finally {
    await db.$disconnect();
  }
}
