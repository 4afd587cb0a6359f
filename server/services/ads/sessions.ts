import { addressKey } from "../../coordinator/network";
import type { AdCreative } from "../../../generated/prisma/client";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { postTransaction, type Tx } from "../credits/ledger";
import { dbKind } from "../../store/prisma";
import { SYSTEM_GRANTS, userAccount, toCredits } from "../credits/accounts";
import { resolveVast } from "./vast";

/** A session with no heartbeat for this long is abandoned (the tab was closed). */
export const SESSION_ALIVE_MS = 15_000;
/** One heartbeat credits at most this much time, however long since the last one. */
export const MAX_BEAT_CREDIT_MS = 2_000;
const DAY_MS = 24 * 3600 * 1000;

export interface PlayableCreative {
  id: string;
  name: string;
  kind: string;
  mediaUrl: string;
  mimeType: string;
  clickUrl: string | null;
  durationSeconds: number;
}

export const houseMediaUrl = (hash: string) => `/api/ads/media/${hash}`;

async function playable(c: AdCreative): Promise<PlayableCreative> {
  if (c.kind === "vast") {
    if (!c.vastUrl) throw new Error("VAST creative without a URL");
    const v = await resolveVast(c.vastUrl);
    return { id: c.id, name: c.name, kind: c.kind, mediaUrl: v.mediaUrl, mimeType: v.mimeType, clickUrl: v.clickUrl ?? c.clickUrl, durationSeconds: v.durationSeconds };
  }
  if (!c.mediaHash || !c.mimeType) throw new Error("house ad without media");
  return { id: c.id, name: c.name, kind: c.kind, mediaUrl: houseMediaUrl(c.mediaHash), mimeType: c.mimeType, clickUrl: c.clickUrl, durationSeconds: c.durationSeconds };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;

/**
 * Inside the claim's transaction, so two claims at once cannot both pass at the cap: SQLite's
 * transactions run one at a time; on PostgreSQL (several nodes) the account's and the address's
 * claims take turns on advisory locks held until the transaction ends.
 */
async function checkCaps(deps: AppDeps, tx: Tx, userId: string, ip: string, now: Date) {
  if (dbKind(deps.db) === "postgres") {
    for (const key of [`ad-claim:user:${userId}`, `ad-claim:ip:${ip}`].sort()) {
      await tx.$executeRawUnsafe("SELECT pg_advisory_xact_lock(hashtext($1))", key);
    }
  }
  const since = new Date(now.getTime() - DAY_MS);
  const { ADS_DAILY_CAP_PER_ACCOUNT: perAccount, ADS_DAILY_CAP_PER_IP: perIp } = deps.env;
  const mine = await tx.adSession.count({ where: { userId, state: "claimed", claimedAt: { gte: since } } });
  if (mine >= perAccount) {
    throw new UserError("FORBIDDEN", `Daily limit reached: this account has been paid for ${plural(mine, "ad")} in the last 24 hours (the limit is ${perAccount}). Come back tomorrow.`);
  }
  const fromIp = await tx.adSession.count({ where: { ip, state: "claimed", claimedAt: { gte: since } } });
  if (fromIp >= perIp) {
    throw new UserError("FORBIDDEN", `Daily limit reached: ${plural(fromIp, "ad")} have been paid to this network address in the last 24 hours (the limit is ${perIp}). Come back tomorrow.`);
  }
}

/**
 * Opens an ad session: one live session per account (a second tab is refused, a silent one
 * is abandoned), daily caps per account and per IP, then an active creative at random (a
 * VAST tag that fails is skipped for another creative).
 */
const ALREADY_WATCHING = "You are already watching an ad (in another tab?). Finish it there, or wait 15 seconds after closing it.";

/** Refuses while the user's open session is alive; abandons one that went quiet. */
async function closeStaleOrRefuse(db: Pick<Tx, "adSession">, userId: string, now: Date) {
  const open = await db.adSession.findFirst({ where: { userId, state: "open" }, orderBy: { openedAt: "desc" } });
  if (!open) return;
  const last = (open.lastBeatAt ?? open.openedAt).getTime();
  if (now.getTime() - last < SESSION_ALIVE_MS) throw new UserError("CONFLICT", ALREADY_WATCHING);
  await db.adSession.updateMany({ where: { userId, state: "open" }, data: { state: "abandoned" } });
}

export async function startAd(deps: AppDeps, userId: string, clientIp: string) {
  // Sessions are kept, and capped, by the network a client is in (an IPv6 /48, as every
  // per-address budget): by the exact address, one /64 was 2^64 addresses' worth of ads.
  const ip = addressKey(clientIp);
  const { db } = deps;
  const now = new Date();
  // Early, so a second tab is refused before a creative is fetched; checked again under the lock below.
  await closeStaleOrRefuse(db, userId, now);
  // Early, so a capped viewer is not shown an ad it cannot be paid for; the claim checks again.
  await checkCaps(deps, db, userId, ip, now);

  const creatives = await db.adCreative.findMany({ where: { active: true } });
  // Random order; the first that resolves is shown.
  for (let i = creatives.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [creatives[i], creatives[j]] = [creatives[j], creatives[i]];
  }
  let chosen: { row: AdCreative; play: PlayableCreative } | undefined;
  for (const row of creatives) {
    try {
      chosen = { row, play: await playable(row) };
      break;
    } catch {
      /* a broken creative (e.g. an unreachable VAST tag): try another */
    }
  }
  if (!chosen) throw new UserError("NOT_FOUND", "No ads are available right now. Try again later.");

  const session = await db.$transaction(async (tx) => {
    // Starts of one user take turns on the user's row (a no-op write: PostgreSQL's row lock,
    // SQLite's one writer), so of two tabs starting at once the second sees the first's session.
    await tx.$executeRaw`UPDATE "User" SET "id" = "id" WHERE "id" = ${userId}`;
    await closeStaleOrRefuse(tx, userId, now);
    const s = await tx.adSession.create({
      data: { userId, creativeId: chosen.row.id, ip, state: "open", requiredSeconds: chosen.play.durationSeconds, reward: chosen.row.reward, openedAt: now, lastBeatAt: now },
    });
    await tx.adCreative.update({ where: { id: chosen.row.id }, data: { views: { increment: 1 } } });
    return s;
  });
  return { sessionId: session.id, creative: chosen.play, reward: session.reward, requiredSeconds: session.requiredSeconds };
}

async function ownSession(deps: AppDeps, userId: string, sessionId: string) {
  const s = await deps.db.adSession.findUnique({ where: { id: sessionId } });
  if (!s || s.userId !== userId) throw new UserError("NOT_FOUND", "No such ad session.");
  return s;
}

function progress(s: { watchedMs: number; requiredSeconds: number; openedAt: Date }, now: Date) {
  const requiredMs = s.requiredSeconds * 1000;
  const remainingMs = Math.max(0, requiredMs - s.watchedMs, requiredMs - (now.getTime() - s.openedAt.getTime()));
  return { watchedMs: s.watchedMs, requiredMs, remainingSeconds: Math.ceil(remainingMs / 1000) };
}

function closedMessage(state: string) {
  return state === "claimed" ? "You already claimed this ad; it is paid only once." : "This ad session was closed (it went quiet or was cancelled). Start a new one.";
}

/**
 * The player's heartbeat: the server's own clock measures the time since the previous beat
 * (at most MAX_BEAT_CREDIT_MS) and credits it only if the tab was visible and focused.
 */
export async function heartbeat(deps: AppDeps, userId: string, sessionId: string, visible: boolean) {
  const s = await ownSession(deps, userId, sessionId);
  if (s.state !== "open") throw new UserError("CONFLICT", closedMessage(s.state));
  const now = new Date();
  const last = s.lastBeatAt ?? s.openedAt;
  const credit = visible ? Math.max(0, Math.min(now.getTime() - last.getTime(), MAX_BEAT_CREDIT_MS)) : 0;
  // Guarded on the previous beat, so two concurrent beats can't both credit the same interval.
  const { count } = await deps.db.adSession.updateMany({
    where: { id: s.id, state: "open", lastBeatAt: s.lastBeatAt },
    data: { lastBeatAt: now, watchedMs: { increment: credit } },
  });
  const watchedMs = s.watchedMs + (count ? credit : 0);
  return { ...progress({ ...s, watchedMs }, now), counted: count > 0 && visible };
}

/** Closes a session without paying (the player was closed). */
export async function cancelAd(deps: AppDeps, userId: string, sessionId: string) {
  await ownSession(deps, userId, sessionId);
  await deps.db.adSession.updateMany({ where: { id: sessionId, state: "open" }, data: { state: "abandoned" } });
  return { ok: true };
}

/**
 * Pays for a watched ad once: refused before the required time has been watched (by the
 * server's measure, in heartbeats and in wall time since the session opened), refused a
 * second time, refused over the daily caps. The payment and the state change are one transaction.
 */
export async function claimAd(deps: AppDeps, userId: string, sessionId: string) {
  const s = await ownSession(deps, userId, sessionId);
  if (s.state !== "open") throw new UserError("CONFLICT", closedMessage(s.state));
  const now = new Date();
  const p = progress(s, now);
  if (p.remainingSeconds > 0) {
    throw new UserError("BAD_REQUEST", `Too early: ${p.remainingSeconds} s of the ad still to watch (time only counts while the tab is visible and focused).`);
  }
  return deps.db.$transaction(async (tx) => {
    await checkCaps(deps, tx, userId, s.ip, now);
    const { count } = await tx.adSession.updateMany({ where: { id: s.id, state: "open" }, data: { state: "claimed", claimedAt: now } });
    if (count === 0) throw new UserError("CONFLICT", closedMessage("claimed"));
    if (s.reward > 0) {
      await postTransaction(tx, "ad", [
        { accountId: SYSTEM_GRANTS, amount: -s.reward },
        { accountId: userAccount(userId), amount: s.reward },
      ], { memo: `ad ${s.creativeId} session ${s.id}` });
    }
    await tx.adCreative.update({ where: { id: s.creativeId }, data: { claims: { increment: 1 } } });
    const acc = await tx.account.findUnique({ where: { id: userAccount(userId) }, select: { balance: true } });
    return { reward: s.reward, rewardCredits: toCredits(s.reward), balance: acc?.balance ?? 0 };
  });
}
