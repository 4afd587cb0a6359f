// Ledger account ids. Amounts everywhere are integer millicredits (1 credit = 1000).
export const MILLI = 1000;
export const SYSTEM_GRANTS = "system:grants";
export const userAccount = (userId: string) => `user:${userId}`;
export const anonAccount = (volunteerId: string) => `anon:${volunteerId}`;
export const escrowAccount = (jobId: string) => `escrow:${jobId}`;

export type AccountKind = "user" | "anon" | "escrow" | "system";
export const accountKind = (id: string) => id.slice(0, id.indexOf(":")) as AccountKind;

export const toCredits = (millicredits: number) => millicredits / MILLI;
export const fromCredits = (credits: number) => Math.round(credits * MILLI);
