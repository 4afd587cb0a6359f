import { z } from "zod";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { outputDigest } from "../../coordinator/digest";

// Submissions under a client's key (the Idempotency-Key header, or the `idempotencyKey` field),
// as the IETF draft "The Idempotency-Key HTTP Header Field" and payment APIs do it: a client
// that retries after a timeout, or a double click, gets the job the first request created
// instead of a second one charged again. The key is the owner's: another account's same key is
// another submission. It is kept with the job, for as long as the job.

export const idempotencyKeySchema = z.string()
  .min(1, "An idempotency key is 1 to 255 characters.").max(255, "An idempotency key is 1 to 255 characters.")
  .regex(/^[\x21-\x7e]+$/, "An idempotency key is printable ASCII without spaces (a UUID, say).");

export interface Submitted { id: string; estimate: number; chunks: number }

/**
 * Submissions of this server in progress by owner and key, with their hash: a repeat that
 * arrives meanwhile waits for the first; a different submission under the key is refused.
 */
const inFlight = new WeakMap<object, Map<string, { hash: string; running: Promise<Submitted & { replayed: boolean }> }>>();

/** A stable digest of a submission: the same fields in any key order give the same hash. */
export const requestHash = (input: unknown): string => outputDigest(input);

/**
 * Runs `submit` once per owner and key: a repeat returns the first submission's job (with
 * `replayed: true`), and the key reused for a different submission is refused.
 */
export async function submitOnce(
  deps: Pick<AppDeps, "db" | "coordinator">, ownerId: string, key: string, hash: string,
  submit: () => Promise<Submitted>,
): Promise<Submitted & { replayed: boolean }> {
  let mine = inFlight.get(deps.coordinator);
  if (!mine) inFlight.set(deps.coordinator, (mine = new Map()));
  const slot = `${ownerId}\n${key}`;
  const pending = mine.get(slot);
  if (pending) {
    if (pending.hash !== hash) throw reused(key, "a submission still in progress");
    return { ...(await pending.running), replayed: true };
  }
  const running = (async () => {
    const first = await earlier(deps, ownerId, key, hash);
    if (first) return { ...first, replayed: true };
    try {
      return { ...(await submit()), replayed: false };
    } catch (e) {
      // Another node of a cluster took the key first: its job is the answer.
      const theirs = isKeyTaken(e) ? await earlier(deps, ownerId, key, hash) : undefined;
      if (theirs) return { ...theirs, replayed: true };
      throw e;
    }
  })();
  mine.set(slot, { hash, running });
  try {
    return await running;
  } finally {
    mine.delete(slot);
  }
}

async function earlier(deps: Pick<AppDeps, "db">, ownerId: string, key: string, hash: string): Promise<Submitted | undefined> {
  const job = await deps.db.job.findUnique({
    where: { ownerId_idempotencyKey: { ownerId, idempotencyKey: key } },
    select: { id: true, estimate: true, chunks: true, requestHash: true },
  });
  if (!job) return undefined;
  if (job.requestHash !== hash) throw reused(key, `job ${job.id}`);
  return { id: job.id, estimate: job.estimate, chunks: job.chunks };
}

function reused(key: string, first: string): UserError {
  return new UserError("UNPROCESSABLE_CONTENT", `The idempotency key ${JSON.stringify(key)} was used for another submission (${first}): use a new key for a new job.`);
}

/** The unique index on (owner, key) refused the job's row: SQLite's message, PostgreSQL's code. */
function isKeyTaken(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return err.code === "23505" || /UNIQUE constraint failed: Job\.ownerId, Job\.idempotencyKey/.test(err.message ?? "");
}
