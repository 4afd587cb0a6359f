import type { WebSocket } from "ws";
import { clampBenchmark } from "../../worker/client/benchmark";
import { PROTOCOL_VERSION, parseClientMessage, type Hello } from "../../worker/protocol/messages";
import type { GroupCommitter } from "../store/groupCommit";
import type { Db } from "../store/prisma";
import type { PersistOp } from "../services/jobs/batchSql";
import { checkVolunteer, claimAnonymousCredits, volunteerRow, WRONG_TOKEN } from "../services/volunteers/volunteers";
import { hostKey, loadRecords } from "../services/volunteers/reliability";
import { anonAccount, userAccount } from "../services/credits/accounts";
import { UserError } from "../services/errors";
import { closeKeySockets } from "../auth/keySockets";
import type { SharedLimiter } from "../cluster/limiter";
import { addressKey, errorVoice, networkOf } from "./network";
import { send, windowFor, windowOf, type VolunteerConn } from "./connection";
import { atEndOfTurn } from "./cork";
import { InteractiveRouter } from "./interactive";
import { toRecord, type ReliabilityBook } from "./reliabilityBook";
import type { Notices, ResultPipeline } from "./resultPipeline";
import type { Dispatcher } from "./dispatch";
import type { Live } from "./live";
import type { Digested, OutputDigests } from "./outputDigests";

const HELLO_TIMEOUT_MS = 10_000;
/** Sockets one volunteer id may hold at once (a browser's tabs share one id). */
export const MAX_SOCKETS_PER_VOLUNTEER = 8;
const KEY_REVOKED = "The API key this volunteer signed in with was revoked: start it again with another key.";

/** Who opened a volunteer socket: its session's or API key's user (and the key), and its address. */
export interface VolunteerIdentity {
  userId: string | null;
  keyId?: string;
  address?: string;
}
const MAX_BAD_MESSAGES = 20;
/** The largest frame read before a hello. */
const MAX_HELLO_BYTES = 64 * 1024;
/**
 * Results for tasks the volunteer does not hold (late ones, of leases revoked or lapsed): a
 * volunteer holds at most its window (2 a thread, 512 at 256 threads), so this many at once,
 * refilled at STRANGER_RESULTS_PER_SECOND. Past that the socket is closed: four anonymous
 * sockets sending 4 MB frames of 512 such results each, one after another, held the server's
 * loop for 87 s when each frame within the allowance only counted as fine.
 */
const STRANGER_RESULTS_ALLOWED = 512;
const STRANGER_RESULTS_PER_SECOND = 64;
/**
 * The same in bytes, a frame's share of them by its results for tasks not held: six sockets
 * sending 4 MB frames of one such result each (within the count) made the server parse 1 GB in
 * 12 s, its health p99 229 ms. Four full frames at once, a quarter MiB a second after.
 */
const STRANGER_BYTES_ALLOWED = 16 * 1024 * 1024;
const STRANGER_BYTES_PER_SECOND = 256 * 1024;

export interface EdgeDeps {
  db: Db;
  queue: GroupCommitter<PersistOp>;
  dispatch: Dispatcher;
  pipeline: ResultPipeline;
  book: ReliabilityBook;
  /** The largest frame the socket server reads; volunteers are told it so they split their results to fit. */
  maxMessageBytes?: number;
  /** Results a second for tasks a volunteer does not hold, past STRANGER_RESULTS_ALLOWED at once (STRAY_RESULTS_PER_SECOND). */
  strayResultsPerSecond?: number;
  /** Volunteer ids new to the server per network address (NEW_VOLUNTEERS_PER_ADDRESS an hour): see hello(). */
  newVolunteers?: SharedLimiter;
  /** Where large results frames have their outputs digested, off the loop. */
  digests?: OutputDigests;
}

/**
 * The volunteer sockets: frames are parsed and refused here, a hello becomes a volunteer the
 * scheduler knows, results go down the result pipeline, and what the pipeline decides comes
 * back up as credits, and as kicks for the banned.
 */
export class VolunteerEdge implements Notices {
  /** Interactive tasks (calc): routed to the least loaded of two random volunteers. */
  readonly interactive: InteractiveRouter;
  private connSeq = 0;
  /** Volunteer ids whose first hello is not committed yet, with their token hash. */
  private readonly registering = new Map<string, string>();
  /** Sockets registered per volunteer id (MAX_SOCKETS_PER_VOLUNTEER). */
  private readonly socketsOf = new Map<string, number>();
  /** API keys revoked while this process runs (a handful): a hello under way with one is refused. */
  private readonly revokedKeys = new Set<string>();
  /** Verdicts waiting to be told to their volunteers at the end of this turn (see credit()). */
  private readonly creditsOut = new Map<string, { valid: string[]; invalid: string[]; credits: number }>();
  private creditsFlush = false;

  constructor(private readonly live: Live, private readonly deps: EdgeDeps) {
    this.interactive = new InteractiveRouter({
      candidates: () => [...live.conns.values()].map((c) => ({ key: c.key, volunteerId: c.volunteerId, threads: c.threads })),
      leased: (key) => live.scheduler.heldBy(key).length,
      send: (key, msg) => {
        const c = live.conns.get(key);
        if (!c || c.ws.readyState !== c.ws.OPEN) return false;
        send(c.ws, msg);
        return true;
      },
    });
  }

  /** Takes over a freshly upgraded volunteer socket; `userId` comes from its session or API key. */
  handleConnection(ws: WebSocket, identity: VolunteerIdentity) {
    const { observer } = this.live;
    let conn: VolunteerConn | undefined;
    let bad = 0;
    let helloPending = false;
    let strangerAllowance = STRANGER_RESULTS_ALLOWED;
    let strangerBytes = STRANGER_BYTES_ALLOWED;
    let strangerAt = performance.now();
    const helloTimer = setTimeout(() => {
      if (!conn) ws.close(1008, "expected a hello message");
    }, HELLO_TIMEOUT_MS);

    // While a large frame's outputs are digested on the thread, the socket is paused and what
    // it had already sent waits here: its frames are handled in the order they came.
    let digesting = false;
    const backlog: Array<{ data: Buffer; isBinary: boolean }> = [];
    ws.on("message", (data, isBinary) => {
      if (digesting) backlog.push({ data: data as Buffer, isBinary });
      else handle(data as Buffer, isBinary);
    });
    const handle = (data: Buffer, isBinary: boolean, digested?: Digested & { raw: string }) => {
      try {
        onMessage(data, isBinary, digested);
      } catch (e) {
        // Whatever one client's frame provokes stays with that client: it is told, its socket
        // closed and its leases re-queued; the process and every other volunteer carry on.
        observer.messageRejected();
        this.live.log(`volunteer frame failed: ${(e as Error)?.message ?? String(e)}`.slice(0, 300));
        send(ws, { type: "error", code: "internal", message: "this message could not be handled; the connection is closed" });
        ws.close(1011, "message could not be handled");
        if (conn) this.drop(conn);
      }
    };
    const onMessage = (data: Buffer, isBinary: boolean, digested?: Digested & { raw: string }) => {
      // Shutting down: the commit queue is closed; what was not acknowledged is computed again.
      if (this.live.closed) return;
      const reject = (code: string, message: string) => {
        observer.messageRejected();
        send(ws, { type: "error", code, message });
        if (++bad >= MAX_BAD_MESSAGES) ws.close(1008, "too many invalid messages");
      };
      if (isBinary) return reject("bad-message", "frames must be JSON text");
      // Nothing but a hello (a few hundred bytes) is read before the hello: a stranger's first
      // frames cannot be the 4 MiB a volunteer's results may take.
      if (!conn && data.length > MAX_HELLO_BYTES) {
        observer.messageRejected();
        return ws.close(1009, "a hello is at most 64 KiB");
      }
      const raw = digested?.raw ?? data.toString();
      const { digests } = this.deps;
      if (conn && !digested && digests?.wants(data.length)) {
        // Only results are this large: their canonical texts and digests are made on the
        // thread (outputDigests.ts) while the loop serves the other sockets.
        digesting = true;
        ws.pause();
        void digests.digests(raw).then((d) => {
          digesting = false;
          handle(data, isBinary, { raw, ...d });
          while (!digesting && backlog.length) {
            const next = backlog.shift()!;
            handle(next.data, next.isBinary);
          }
          // Read on only once what came before is handled (unless another large frame waits).
          if (!digesting) ws.resume();
        });
        return;
      }
      const parsed = parseClientMessage(raw, digested?.shallow);
      if (!parsed.ok) return reject("bad-message", parsed.error);
      const msg = parsed.msg;
      if (msg.type === "hello") {
        if (conn || helloPending) return reject("bad-message", "hello was already received");
        helloPending = true;
        this.hello(ws, msg, identity).then(
          (c) => {
            clearTimeout(helloTimer);
            conn = c;
            if (ws.readyState !== ws.OPEN) this.drop(c);
          },
          (e: Error) => {
            // Refusals (protocol, token, ban) are told as they are; anything else is the
            // server's trouble: logged, and the client told to try again later.
            if (!(e instanceof UserError)) {
              this.live.log(`hello of a volunteer failed: ${e.stack ?? e.message}`);
              send(ws, { type: "error", code: "unavailable", message: "the server could not register this volunteer; try again later" });
              ws.close(1011, "try again later");
              return;
            }
            send(ws, { type: "error", code: "hello-refused", message: e.message });
            // Throttled: the client comes back later on its own (1013); anything else is for good.
            ws.close(e.code === "TOO_MANY_REQUESTS" ? 1013 : 1008, e.message.slice(0, 120));
          },
        );
        return;
      }
      if (!conn) return reject("bad-message", "send hello first");
      // Dropped (banned, or gone while its hello was pending): the socket is closing and what
      // it still sends is moot; the scheduler no longer knows it (setWindow would throw).
      if (!this.live.conns.has(conn.key)) return;
      if (msg.type === "capacity") {
        conn.threads = msg.threads;
        this.live.scheduler.setWindow(conn.key, windowOf(conn));
        this.deps.dispatch.dispatch(conn);
        this.deps.dispatch.capacityChanged();
      } else if (msg.type === "load") {
        this.interactive.report(conn.key, msg);
      } else if (msg.type === "interactive-result") {
        this.interactive.answer(conn.key, msg);
      } else {
        // Results for tasks it does not hold are echoed back (the pipeline, up to 512 a frame);
        // more than it could ever have been sent close the socket, so junk cannot buy server work.
        const texts = digested?.texts?.length === msg.results.length ? digested.texts : undefined;
        const strangers = this.deps.pipeline.results(conn, msg.results, STRANGER_RESULTS_ALLOWED, texts);
        if (strangers > 0) {
          const now = performance.now();
          const seconds = (now - strangerAt) / 1000;
          strangerAllowance = Math.min(STRANGER_RESULTS_ALLOWED, strangerAllowance + seconds * (this.deps.strayResultsPerSecond ?? STRANGER_RESULTS_PER_SECOND)) - strangers;
          strangerBytes = Math.min(STRANGER_BYTES_ALLOWED, strangerBytes + seconds * STRANGER_BYTES_PER_SECOND) - (raw.length * strangers) / msg.results.length;
          strangerAt = now;
          if (strangerAllowance < 0 || strangerBytes < 0) {
            reject("bad-message", `${strangers} results for tasks this volunteer does not hold, more (in number or in bytes) than it could have been sent; the connection is closed`);
            ws.close(1008, "results for tasks not held");
            // A client that does not read would hold the closing handshake (and its leases) for 30 s.
            setTimeout(() => ws.terminate(), 1000).unref();
          }
        }
      }
    };
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (conn) this.drop(conn);
    });
    ws.on("error", (e: Error & { code?: string }) => {
      if (e.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
        // ws has sent the close (1009) for a frame over MAX_WS_MESSAGE_BYTES: let the client
        // read it (terminating now would reset the connection and lose the code), but not wait
        // for an answer for long.
        observer.shed("frame-too-large");
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      ws.terminate();
    });
  }

  private async hello(ws: WebSocket, msg: Hello, { userId, keyId, address }: VolunteerIdentity): Promise<VolunteerConn> {
    if (msg.protocol !== PROTOCOL_VERSION) {
      throw new UserError("BAD_REQUEST", `protocol ${msg.protocol} is not supported; this server speaks ${PROTOCOL_VERSION}`);
    }
    const { db, book } = this.deps;
    const benchmark = clampBenchmark(msg.benchmark);
    const { tokenHash, existed } = await checkVolunteer(db, msg, this.registering);
    // Each id new to the server is a row for good: a stranger making up ids at the hello rate
    // grew the Volunteer table by thousands a second. Known ids, and one already on its way
    // in, are not counted.
    if (!existed && !this.registering.has(msg.volunteerId) && address && this.deps.newVolunteers && !(await this.deps.newVolunteers.take(addressKey(address)))) {
      this.live.observer.shed("new-volunteer-throttled");
      throw new UserError("TOO_MANY_REQUESTS", "Too many new volunteers from this network address in the last hour: connect again later, or with a volunteer id this server knows.");
    }
    // Another hello of this new id may have begun registering it during that wait.
    const pending = this.registering.get(msg.volunteerId);
    if (!existed && pending !== undefined && pending !== tokenHash) throw new UserError("FORBIDDEN", WRONG_TOKEN);
    // Its row goes through the group commit (a burst of hellos is a few batches, off the event
    // loop) and is durable before the welcome; until then the id is held here, so a second
    // hello with another token is refused all the same.
    if (!existed) this.registering.set(msg.volunteerId, tokenHash);
    await this.deps.queue.enqueue({ type: "volunteer", ...volunteerRow({ ...msg, userId, benchmark }, tokenHash) })
      .finally(() => this.registering.delete(msg.volunteerId));
    // Signed in: what this id earned while anonymous moves to the account.
    if (userId && existed) await claimAnonymousCredits(db, userId, msg.volunteerId);
    const accountId = userId ? userAccount(userId) : anonAccount(msg.volunteerId);
    const host = hostKey(msg.volunteerId);
    const records = await loadRecords(db, [host, accountId]);
    for (const row of records.values()) book.seed(row);
    const ban = book.activeBan([host, accountId], new Date(this.live.now()));
    if (ban) throw new UserError("FORBIDDEN", `banned until ${ban.until.toISOString()}: ${ban.reason}`);
    // Revoked between the upgrade (which checked the key) and now.
    if (keyId && this.revokedKeys.has(keyId)) throw new UserError("FORBIDDEN", KEY_REVOKED);
    const conn: VolunteerConn = {
      key: `${msg.volunteerId}~${++this.connSeq}`,
      volunteerId: msg.volunteerId, accountId, userId, ...(keyId ? { keyId } : {}), agent: msg.agent, threads: msg.threads,
      connectedAt: this.live.now(), earned: 0, tasksDone: 0, proven: 0, benchmark, ws,
      ...(this.startsSmall(msg.volunteerId, records.get(host)!.valid) ? { lapsed: true } : {}),
    };
    if (ws.readyState !== ws.OPEN || this.live.closed) return conn;
    // Checked and counted in one turn with the registration below, so a burst cannot slip past.
    const held = this.socketsOf.get(msg.volunteerId) ?? 0;
    if (held >= MAX_SOCKETS_PER_VOLUNTEER) {
      throw new UserError("CONFLICT", `This volunteer id is connected ${held} times already, the most one id may be: stop one of them first.`);
    }
    this.socketsOf.set(msg.volunteerId, held + 1);
    this.live.conns.set(conn.key, conn);
    this.live.scheduler.addVolunteer(conn.key, {
      window: windowOf(conn), host: msg.volunteerId, account: accountId,
      hostRecord: toRecord(records.get(host)!), accountRecord: toRecord(records.get(accountId)!),
      speed: benchmark, network: networkOf(address), voice: errorVoice(accountId, userId, networkOf(address)),
    });
    send(ws, {
      type: "welcome", protocol: PROTOCOL_VERSION, volunteerId: msg.volunteerId, account: accountId,
      signedIn: !!userId, window: windowFor(msg.threads),
      ...(this.deps.maxMessageBytes ? { maxMessageBytes: this.deps.maxMessageBytes } : {}),
    });
    this.live.log(`volunteer ${conn.key} joined (${msg.agent}, ${msg.threads} threads${userId ? ", signed in" : ""})`);
    this.live.emit("volunteers");
    this.deps.dispatch.dispatch(conn);
    return conn;
  }

  /**
   * A new socket starts from LAPSED_WINDOW, not FIRST_WINDOW, when its id let leases lapse or
   * left holding tasks it never answered (Dispatcher.hasLapsed), or when it is a second socket
   * of an id with no valid result yet: hoarders opened the next socket before closing the last.
   */
  private startsSmall(volunteerId: string, valid: number): boolean {
    return this.deps.dispatch.hasLapsed(volunteerId) || ((this.socketsOf.get(volunteerId) ?? 0) > 0 && valid === 0);
  }

  private drop(conn: VolunteerConn) {
    if (!this.live.conns.delete(conn.key)) return;
    const held = (this.socketsOf.get(conn.volunteerId) ?? 1) - 1;
    if (held > 0) this.socketsOf.set(conn.volunteerId, held);
    else this.socketsOf.delete(conn.volunteerId);
    this.deps.dispatch.forgetRinger(conn);
    this.interactive.forget(conn.key);
    const requeued = this.live.scheduler.removeVolunteer(conn.key, this.live.now());
    // Gone with tasks and no result returned on this socket: its id's next socket starts small.
    if (requeued.length && conn.tasksDone === 0) this.deps.dispatch.markLapsed(conn.volunteerId);
    this.live.log(`volunteer ${conn.key} left; ${requeued.length} task(s) re-queued`);
    this.live.emit("volunteers");
    if (requeued.length) this.deps.dispatch.dispatchAll();
  }

  /**
   * Tells each volunteer (still connected) which of its results were paid or found invalid.
   * Verdicts of one commit are gathered and sent as one message per volunteer at the end of
   * the turn, not one per unit.
   */
  credit(valid: Array<{ taskId: string; pay: number; volunteer?: string }>, invalid: Array<{ taskId: string; volunteer?: string }>) {
    const entry = (key: string) => this.creditsOut.get(key) ?? this.creditsOut.set(key, { valid: [], invalid: [], credits: 0 }).get(key)!;
    for (const r of valid) if (r.volunteer) (entry(r.volunteer).valid.push(r.taskId), (entry(r.volunteer).credits += r.pay));
    for (const r of invalid) if (r.volunteer) entry(r.volunteer).invalid.push(r.taskId);
    if (this.creditsFlush || !this.creditsOut.size) return;
    this.creditsFlush = true;
    atEndOfTurn(() => {
      this.creditsFlush = false;
      for (const [key, c] of this.creditsOut) {
        const conn = this.live.conns.get(key);
        if (!conn) continue;
        conn.earned += c.credits;
        send(conn.ws, { type: "credit", ...c });
      }
      this.creditsOut.clear();
    });
  }

  /** Bans a host ("host:<volunteerId>") or an account until `until`, closing its sockets. */
  async ban(id: string, until: Date, reason: string) {
    this.deps.book.setBan(id, until, reason);
    await this.deps.db.reliability.upsert({ where: { id }, create: { id, bannedUntil: until, banReason: reason }, update: { bannedUntil: until, banReason: reason } });
    this.kick(id, until, reason);
  }

  async unban(id: string) {
    this.deps.book.setBan(id, null, null);
    await this.deps.db.reliability.upsert({ where: { id }, create: { id }, update: { bannedUntil: null, banReason: null, consecutiveInvalid: 0 } });
  }

  kick(id: string, until: Date, reason: string) {
    for (const c of this.live.conns.values()) {
      if (hostKey(c.volunteerId) !== id && c.accountId !== id) continue;
      send(c.ws, { type: "error", code: "banned", message: `Banned until ${until.toISOString()}: ${reason}` });
      c.ws.close(1008, "banned");
      this.drop(c);
    }
  }

  /**
   * An API key was revoked: the sockets that signed in with it are closed and told why (the
   * key was checked at the upgrade only, so they kept earning for the account). Their clients
   * do not reconnect after a 1008 with an error.
   */
  revokeKey(keyId: string) {
    this.revokedKeys.add(keyId);
    closeKeySockets(keyId, "API key revoked");
    for (const c of this.live.conns.values()) {
      if (c.keyId !== keyId) continue;
      send(c.ws, { type: "error", code: "key-revoked", message: KEY_REVOKED });
      c.ws.close(1008, "API key revoked");
      this.drop(c);
    }
  }

  volunteers() {
    return [...this.live.conns.values()].map((c) => ({
      key: c.key, volunteerId: c.volunteerId, userId: c.userId, agent: c.agent, threads: c.threads,
      connectedAt: c.connectedAt, tasksDone: c.tasksDone, earned: c.earned, held: this.live.scheduler.heldBy(c.key).length,
    }));
  }
}
