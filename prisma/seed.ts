import { createPrisma } from "../server/store/prisma";
import { SYSTEM_GRANTS } from "../server/services/credits/accounts";

// Idempotent: run after every migration. The first account to sign up becomes admin.
const db = createPrisma();
await db.account.upsert({ where: { id: SYSTEM_GRANTS }, create: { id: SYSTEM_GRANTS, kind: "system" }, update: {} });
const users = await db.user.count();
console.log(users ? `database ready (${users} account(s))` : "database ready: the first account to sign up becomes the admin");
await db.$disconnect();
