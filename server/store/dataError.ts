/**
 * Whether a failed write failed on the data it was given, so that writing the same data again
 * fails the same way: PostgreSQL's SQLSTATE classes 22 (data exception: a number out of an
 * integer column's range, a bad date), 23 (a constraint broken: NOT NULL, unique, foreign key)
 * and 54 (a program limit: a row or an array too big); SQLite's constraint, type and size
 * errors; a JavaScript RangeError (a value that cannot be bound, a string past V8's longest).
 * Not a lock, a deadlock, a serialization failure or a lost connection: those clear on a retry.
 */
export function isDataError(e: unknown): boolean {
  if (e instanceof RangeError || (e as { name?: unknown } | null)?.name === "RangeError") return true;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  return /^(22|23|54)[0-9A-Z]{3}$/.test(code) || /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code);
}
