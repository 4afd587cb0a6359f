import { z } from "zod";
import { dbKind, type Db } from "../../store/prisma";
import { hashPassword, verifyPassword } from "../../auth/password";
import { postTransaction } from "../credits/ledger";
import { SYSTEM_GRANTS, userAccount } from "../credits/accounts";
import { UserError } from "../errors";

export const emailTaken = () => new UserError("CONFLICT", "An account with this email already exists.");

export const emailSchema = z.string().trim().toLowerCase().email("Enter a valid email address.").max(254);
export const passwordSchema = z
  .string()
  .min(8, "Passwords need at least 8 characters.")
  .max(200, "Passwords are at most 200 characters.");

export interface NewUser {
  email: string;
  password: string;
  /** Force the admin role (CLI); otherwise only the very first account is admin. */
  admin?: boolean;
}

/**
 * Creates an account with a hashed password and the starter grant. The first account ever
 * created becomes admin. Fails with a clear message if the email is taken.
 */
export async function createUser(db: Db, input: NewUser, starterMillicredits: number) {
  const email = emailSchema.parse(input.email);
  const password = passwordSchema.parse(input.password);
  const passwordHash = await hashPassword(password);
  try {
    return await db.$transaction(async (tx) => {
      // SQLite runs one write transaction at a time; PostgreSQL runs sign-ups side by side, and
      // several could each count no users and all become admin: they take turns here.
      // (An advisory lock named as the ad claims name theirs, held until the transaction ends.)
      if (dbKind(db) === "postgres") await tx.$executeRawUnsafe("SELECT pg_advisory_xact_lock(hashtext($1))", "create-user");
      const first = (await tx.user.count()) === 0;
      const user = await tx.user.create({
        data: { email, passwordHash, role: first || input.admin ? "admin" : "user" },
        select: { id: true, email: true, role: true },
      });
      if (starterMillicredits > 0) {
        await postTransaction(tx, "grant", [
          { accountId: SYSTEM_GRANTS, amount: -starterMillicredits },
          { accountId: userAccount(user.id), amount: starterMillicredits },
        ], { memo: "starter grant" });
      }
      return user;
    });
  } catch (e) {
    if ((e as { code?: string }).code === "P2002") throw emailTaken();
    throw e;
  }
}

/** The user for an email and password, or null; the same answer whether the email or the password is wrong. */
export async function authenticate(db: Db, email: string, password: string) {
  const parsed = emailSchema.safeParse(email);
  if (!parsed.success || typeof password !== "string" || password.length > 200) return null;
  const user = await db.user.findUnique({
    where: { email: parsed.data },
    select: { id: true, email: true, role: true, passwordHash: true },
  });
  if (!user) {
    // Spend the same time as a real check so response times don't reveal which emails exist.
    await verifyPassword(password, DUMMY_HASH);
    return null;
  }
  if (!(await verifyPassword(password, user.passwordHash))) return null;
  return { id: user.id, email: user.email, role: user.role };
}

const DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
