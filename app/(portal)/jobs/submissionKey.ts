import { useRef } from "react";

/**
 * The idempotency key of the form's submission: a double click, or pressing Submit again
 * after an error with the form unchanged, sends the same key, so the server creates and
 * charges one job; a changed form, or a new submission after one succeeded, gets a new key.
 */
export function useSubmissionKey() {
  const last = useRef<{ body: string; key: string } | null>(null);
  return {
    keyFor(input: unknown): string {
      const body = JSON.stringify(input);
      if (last.current?.body !== body) last.current = { body, key: randomKey() };
      return last.current.key;
    },
    /** The submission succeeded: the next one is another job. */
    used() {
      last.current = null;
    },
  };
}

// crypto.randomUUID exists only on HTTPS and localhost pages; getRandomValues everywhere.
function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
