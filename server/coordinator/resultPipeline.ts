import type { Scheduler } from "../scheduler";
import type { ErrorOutcome, RecoveryOutcome, ResultOutcome, ResultRef, UnitFailedOutcome, ValidatedOutcome, VerifyOutcome } from "../scheduler/types";
import type { TaskResult } from "../../worker/protocol/messages";
import type { GroupCommitter } from "../store/groupCommit";
import type { PersistOp } from "../services/jobs/batchSql";
import { hostKey } from "../services/volunteers/reliability";
import type { Verifier } from "./verifier";
import type { ProgramAudits } from "./programAudits";
import { AuditEvidence, type AuditDecision } from "./auditEvidence";
import type { Ringer } from "./ringers";
import { Throughput } from "./progress";
import { send, windowFor, windowOf, type VolunteerConn } from "./connection";
import { canonicalJson, digestOf } from "./digest";
import type { ReliabilityBook } from "./reliabilityBook";
import type { CaughtHosts } from "./caughtHosts";
import type { JobLifecycle } from "./jobLifecycle";
import type { Dispatcher } from "./dispatch";
import { payOf, type JobMeta, type Live } from "./live";
import type { OutputTexts } from "./outputDigests";
import type { OutputBudget } from "./outputBudget";
import { PROGRAM_KERNEL } from "../../worker/sandbox/abi";

/** What the pipeline tells volunteers once their results are decided (the volunteer edge does it). */
export interface Notices {
  /** Which of their results were paid or found invalid. */
  credit(valid: Array<{ taskId: string; pay: number; volunteer?: string }>, invalid: Array<{ taskId: string; volunteer?: string }>): void;
  /** Closes the sockets of a banned host or account. */
  kick(id: string, until: Date, reason: string): void;
}

export interface PipelineDeps {
  queue: GroupCommitter<PersistOp>;
  dispatch: Dispatcher;
  lifecycle: JobLifecycle;
  caught: CaughtHosts;
  book: ReliabilityBook;
  verifier: Verifier;
  audits: ProgramAudits;
  notices: Notices;
  /** Bounds what program jobs' outputs store (outputBudget.ts); none: unbounded. */
  outputs?: OutputBudget;
}

/**
 * A frame of results on its way to the ledger: each is checked, stored and handed to the
 * scheduler; a unit it decides (by quorum, or by the server's own spot-check) has its verdicts
 * and payouts committed, then its volunteers are told and, when it was the last, its job ends.
 */
export class ResultPipeline {
  /** Validated units per second over the whole cluster. */
  readonly throughput = new Throughput();
  /** Spot-checks in progress, so tests and shutdown can wait for them. */
  private readonly checking = new Set<Promise<void>>();
  /** What audits found per job: a failed audit keeps the account from the job, a program no engine agrees on is no longer audited (auditEvidence.ts). */
  private readonly evidence = new AuditEvidence();
  /** The last result's output and its canonical JSON (its unit is usually validated right after). */
  private lastOutput: { value: unknown; json: string } | undefined;

  constructor(private readonly live: Live, private readonly deps: PipelineDeps) {}

  /**
   * Records a frame of results; returns how many were for tasks this volunteer does not hold.
   * `texts`, per result in order, are the outputs' canonical texts and digests when they were
   * made already (a large frame's, on a thread: outputDigests.ts).
   */
  results(conn: VolunteerConn, results: TaskResult[], echoAtMost: number, texts?: OutputTexts): number {
    const { scheduler, observer } = this.live;
    const { queue, dispatch } = this.deps;
    const now = this.live.now();
    const handled = performance.now();
    let strangers = 0;
    const recorded: string[] = [];
    // Batches commit in order: once the last result of this frame is durable, all are.
    let lastCommit: Promise<void> | undefined;
    const rejected: Array<{ taskId: string; reason: string }> = [];
    const waiting = new Set<string>();
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      const ringer = dispatch.returnedRinger(conn, r.taskId);
      if (ringer) {
        // Answered as a real task would be: an error or a malformed output is rejected with
        // its reason, anything else accepted (and judged once the server's answer is ready).
        const error = "error" in r ? r.error : this.outputError(this.live.jobs.get(ringer.jobId), (r as { output: unknown }).output);
        if (error !== undefined) {
          observer.taskError();
          rejected.push({ taskId: r.taskId, reason: error });
          conn.ringer = undefined;
          scheduler.setWindow(conn.key, windowOf(conn));
        } else {
          recorded.push(r.taskId);
          this.ringerAnswered(conn, r, ringer);
        }
        continue;
      }
      const task = scheduler.task(r.taskId);
      if (!task || task.volunteerId !== conn.key) {
        // Usually a result that crossed a revoke or a lease expiry: it is told so.
        // Another socket's ringer reads as another socket's task: a probe from a second socket
        // told ringers (unknown-task) from real tasks (not-holder), to answer only them honestly.
        const held = task !== undefined || dispatch.holdsRinger(r.taskId);
        if (++strangers <= echoAtMost) rejected.push({ taskId: r.taskId, reason: held ? "not-holder" : "unknown-task" });
        continue;
      }
      const meta = this.live.jobs.get(task.jobId)!;
      const error = "error" in r ? r.error : this.outputError(meta, (r as { output: unknown }).output);
      if (error !== undefined) {
        observer.taskError();
        rejected.push({ taskId: r.taskId, reason: error });
        this.errored(scheduler.failTask(conn.key, r.taskId, error, now), error);
        continue;
      }
      const output = (r as { output: unknown }).output;
      // The canonical text is both what replicas are compared by and what is stored.
      const made = texts?.[i];
      const outputJson = made?.json ?? canonicalJson(output);
      const digest = made?.digest ?? digestOf(outputJson);
      // A program's output is bounded in size (outputBudget.ts).
      const budget = meta.kernel === PROGRAM_KERNEL ? this.deps.outputs : undefined;
      if (budget) {
        const refused = budget.refuse(Buffer.byteLength(outputJson), meta.outputLimit);
        if (refused) {
          observer.taskError();
          rejected.push({ taskId: r.taskId, reason: refused });
          this.errored(scheduler.failTask(conn.key, r.taskId, refused, now), refused);
          continue;
        }
      }
      this.lastOutput = { value: output, json: outputJson };
      const turnaroundMs = Math.max(0, now - (task.deadline - meta.leaseMs));
      observer.resultReceived(turnaroundMs);
      const outcome = scheduler.completeTask(conn.key, r.taskId, output, digest, now);
      if (outcome.kind === "stale") {
        rejected.push({ taskId: r.taskId, reason: outcome.reason });
        continue;
      }
      // The raw result first: a restart must find it even if its unit is not decided yet.
      const commit = queue.enqueue({
        type: "result", taskId: r.taskId, jobId: meta.jobId, unitId: task.unitId, host: conn.volunteerId,
        account: conn.accountId, outputJson, digest, turnaroundMs,
        // Measured work, for calibration and display only: payment uses the unit's estimate.
        ...("ms" in r && typeof r.ms === "number" ? { cpuMs: r.ms, workMs: r.ms * conn.benchmark } : {}),
        ...(meta.slice ? { slice: meta.slice } : {}),
      });
      recorded.push(r.taskId);
      lastCommit = commit;
      // A result that waits for its quorum changes the job's counts once it is stored.
      if (outcome.kind !== "validated") waiting.add(meta.jobId);
      this.outcome(outcome);
    }
    // A volunteer left with no task waiting behind the ones its threads run is refilled now,
    // so no thread idles however long the commit takes. Otherwise the refill waits for the
    // results to be durable and leaves with the acknowledgement (one write instead of two):
    // the tasks still queued on the volunteer cover the commit, and dispatch does not outrun
    // the database.
    const window = windowOf(conn);
    if (window - scheduler.freeSlots(conn.key) <= conn.threads) dispatch.dispatch(conn);
    (lastCommit ?? Promise.resolve()).then(() => {
      conn.tasksDone += recorded.length;
      if (this.live.conns.has(conn.key)) {
        // A socket still in its first window earns a larger one with each result.
        if (recorded.length) dispatch.proven(conn.volunteerId);
        if (recorded.length && windowOf(conn) < windowFor(conn.threads)) {
          conn.proven += recorded.length;
          scheduler.setWindow(conn.key, windowOf(conn));
        }
        dispatch.dispatch(conn);
      }
      if (recorded.length || rejected.length) send(conn.ws, { type: "ack", accepted: recorded, rejected });
      if (recorded.length) observer.resultsAcked(performance.now() - handled);
      for (const id of waiting) this.live.emit("job", id);
    }).catch((e: Error) => this.live.log(`acknowledging results failed: ${e.message}`));
    return strangers;
  }

  /** Why an output does not fit its kernel's output schema, if it does not. */
  private outputError(meta: JobMeta | undefined, output: unknown): string | undefined {
    const out = meta?.output?.safeParse(output);
    return out && !out.success ? `invalid output: ${out.error.issues[0].path.join(".")}: ${out.error.issues[0].message}` : undefined;
  }

  private errored(outcome: ReturnType<Scheduler["failTask"]>, error: string) {
    if (outcome.kind !== "error-recorded") return;
    const { queue, book, dispatch } = this.deps;
    const o = outcome as ErrorOutcome;
    const held = this.live.jobs.get(o.jobId);
    const jobId = held?.jobId ?? o.jobId;
    void queue.enqueue({ type: "error", taskId: o.taskId, jobId, unitId: o.unitId, host: o.host, account: o.account, error, ...(held?.slice ? { slice: held.slice } : {}) });
    void queue.enqueue({ type: "reliability", rows: book.rows([hostKey(o.host), o.account]) });
    if (o.jobFailed) {
      dispatch.revoke(o.dropped, "job failed");
      void this.deps.lifecycle.finish(o.jobId, "failed", this.live.scheduler.jobError(o.jobId));
    } else if (o.verify) {
      this.outcome(o.verify);
    } else if (o.requeued) {
      dispatch.dispatchAll();
    }
    this.live.emit("job", jobId);
  }

  /** Acts on what the scheduler made of a result, a recovered result or a spot-check. */
  outcome(o: ResultOutcome | RecoveryOutcome) {
    switch (o.kind) {
      case "stale":
        return;
      case "pending":
        if (o.requeued) this.deps.dispatch.dispatchAll();
        return;
      case "verify":
        this.deps.dispatch.revoke(o.revoked, "unit already computed");
        this.check(o);
        return;
      default:
        this.decided(o);
    }
  }

  /**
   * Spot-check: the server recomputes the unit and the scheduler decides it by that answer.
   * Hosts whose result disagrees with it are caught: banned with their accounts at once, and
   * everything they returned is backtracked.
   */
  private check(o: VerifyOutcome) {
    const { scheduler, observer } = this.live;
    const done = (async () => {
      let outcome: ResultOutcome | undefined;
      let computed: Awaited<ReturnType<Verifier["recompute"]>> | undefined;
      try {
        // A check still queued when its job ends (a stranger's cancel) is dropped unrun.
        computed = await this.deps.verifier.recompute(o.kernel, o.params, o.input, {
          work: o.work, stale: () => scheduler.jobState(o.jobId) !== "running", owner: this.live.jobs.get(o.jobId)?.ownerId,
        });
      } catch (e) {
        this.live.log(`spot-check of unit ${o.unitId} could not run (${(e as Error).message}); decided without it`);
      }
      if (this.live.closed) return;
      if (computed) {
        this.lastOutput = { value: computed.output, json: computed.json };
        outcome = scheduler.checked(o.jobId, o.unitId, computed.output, computed.digest);
      } else {
        outcome = scheduler.uncheckable(o.jobId, o.unitId);
      }
      if (!outcome) return;
      observer.spotChecked(outcome.kind === "validated" ? (outcome.caught?.length ?? 0) : 0);
      const caught = outcome.kind === "validated" ? outcome.caught ?? [] : [];
      // Banned before the verdicts are persisted, so the rows written with them carry the ban.
      const meta = this.live.jobs.get(o.jobId);
      const reason = `failed a spot-check: a result for unit ${o.index} of job ${meta?.jobId ?? o.jobId} differs from the server's own computation`;
      const until = this.deps.caught.ban(caught, reason);
      this.outcome(outcome);
      for (const r of caught) this.caught(r, until, reason);
      // A host got no new work while its results awaited this verdict (on probation, and while
      // the check ran): nothing else offers it work now, so this does.
      if (outcome.kind === "validated") this.offerWork(outcome.valid.map((r) => r.host));
    })().catch((e: Error) => this.live.log(`spot-check of unit ${o.unitId} failed: ${e.stack ?? e.message}`));
    this.track(done);
  }

  /**
   * Audits of accepted results (an iterative program's units): the server recomputes each in
   * the background; right, the host passed a spot-check; wrong, it has an invalid result on its
   * record and its account gets no more of the job's units, but is not banned: the server's
   * recompute of a consumer's program proves nothing against a volunteer (auditEvidence.ts).
   * The round went on meanwhile: what the result added to a merge stays (the robust merge bounded it).
   */
  private audit(meta: JobMeta, o: ValidatedOutcome, refs: ResultRef[]) {
    const { scheduler, observer } = this.live;
    const unit = meta.spec.units.find((u) => u.id === o.unitId);
    for (const ref of refs) {
      const done = (async () => {
        // Whatever goes wrong, the scheduler hears of it: a host left marked as audited would never be drawn again.
        const off = this.evidence.stopped(meta.jobId);
        const verdict = off ? { skipped: "the job's program is not reproducible on the server" }
          : unit ? await this.deps.audits.check({ id: meta.jobId, owner: meta.ownerId }, meta.spec.params, meta.spec.comparator, unit.input, ref.output).catch((e: Error) => ({ skipped: e.message }))
          : { skipped: "unit not found" };
        if (this.live.closed) return;
        if ("skipped" in verdict) {
          scheduler.audited(ref, undefined);
          if (!off) this.live.log(`audit of unit ${o.index} of job ${meta.jobId} could not run (${verdict.skipped})`);
          return;
        }
        scheduler.audited(ref, verdict.agrees);
        observer.spotChecked(verdict.agrees ? 0 : 1);
        void this.deps.queue.enqueue({ type: "reliability", rows: this.deps.book.rows([hostKey(ref.host), ref.account]) });
        this.audited(meta.jobId, verdict.agrees ? this.evidence.agreed(meta.jobId, ref) : this.evidence.disputed(meta.jobId, ref), o.index, meta.round);
      })().catch((e: Error) => this.live.log(`audit of unit ${o.unitId} failed: ${e.stack ?? e.message}`));
      this.track(done);
    }
  }

  /** Acts on what a job's audits have established so far (auditEvidence.ts). */
  private audited(jobId: string, d: AuditDecision, index: number, round: number) {
    if (d.kind === "bar") {
      if (this.live.scheduler.barFromJob(jobId, d.account)) this.live.log(`account ${d.account} gets no more units of job ${jobId}: its result for unit ${index} of round ${round} differs from the server's own computation`);
    } else if (d.kind === "irreproducible") {
      this.live.scheduler.unbarFromJob(jobId);
      this.live.log(`audits of job ${jobId} stopped: ${d.reason}`);
    }
  }

  /** A ringer came back: right, it counts as a passed spot-check; wrong, the host is caught. */
  private ringerAnswered(conn: VolunteerConn, r: TaskResult, ringer: Ringer) {
    const { scheduler, observer } = this.live;
    conn.ringer = undefined;
    scheduler.setWindow(conn.key, windowOf(conn));
    const done = (async () => {
      const expected = await ringer.expected;
      if (expected === undefined || this.live.closed) return;
      const output = (r as { output: unknown }).output;
      if (digestOf(canonicalJson(output)) === expected) {
        observer.spotChecked(0);
        scheduler.passedRinger(conn.key);
        void this.deps.queue.enqueue({ type: "reliability", rows: this.deps.book.rows([hostKey(conn.volunteerId), conn.accountId]) });
        // Off probation: its results awaiting a verdict no longer hold back its window.
        if (this.live.conns.has(conn.key) && scheduler.freeSlots(conn.key) > 0) this.deps.dispatch.dispatch(conn);
        return;
      }
      observer.spotChecked(1);
      const meta = this.live.jobs.get(ringer.jobId);
      const reason = `failed a spot-check: a known-answer ${ringer.kernel} task of job ${meta?.jobId ?? ringer.jobId} came back wrong`;
      const ref = { taskId: r.taskId, host: conn.volunteerId, account: conn.accountId, output, digest: "" };
      this.caught(ref, this.deps.caught.ban([ref], reason), reason);
    })().catch((e: Error) => this.live.log(`checking a ringer failed: ${e.message}`));
    this.track(done);
  }

  /**
   * Offers work to every socket of these hosts that has room for it now. By host, not by the
   * socket a result names: results read back from the database (after a restart, or after a
   * backtrack rebuilt their job) name none, and a host may have several sockets.
   */
  private offerWork(hosts: string[]) {
    if (!hosts.length) return;
    const wanted = new Set(hosts);
    for (const c of this.live.conns.values()) {
      if (wanted.has(c.volunteerId) && this.live.scheduler.freeSlots(c.key) > 0) this.deps.dispatch.dispatch(c);
    }
  }

  /**
   * A host proved to cheat outside a result (an interactive answer contradicting the server's
   * own): banned with its account, its sockets closed and what it returned backtracked, as a
   * failed spot-check does.
   */
  proven(host: string, account: string, reason: string) {
    const ref: ResultRef = { taskId: "", host, account, output: null, digest: "" };
    this.caught(ref, this.deps.caught.ban([ref], reason), reason);
  }

  private caught(r: ResultRef, until: Date, reason: string) {
    const backtrack = this.deps.caught.caught(r, until, reason);
    if (backtrack) this.track(backtrack);
  }

  /** Work of the trust policy in flight (checks, backtracks), which settled() waits for. */
  private track(work: Promise<void>) {
    this.checking.add(work);
    void work.finally(() => this.checking.delete(work));
  }

  /** Once every check and backtrack in flight, and any they started, is over. */
  async settled() {
    while (this.checking.size) await Promise.all([...this.checking]);
  }

  /** A unit was decided: persist the verdicts and payouts, tell the volunteers, move on. */
  private decided(o: ValidatedOutcome | UnitFailedOutcome) {
    const { queue, book, dispatch, notices } = this.deps;
    if (o.kind === "unit-failed") {
      this.live.log(`job ${o.jobId} failed: ${o.reason}`);
      dispatch.revoke(o.dropped, "job failed");
      void this.deps.lifecycle.finish(o.jobId, "failed", o.reason);
      return;
    }
    const meta = this.live.jobs.get(o.jobId)!;
    meta.outputs?.set(o.index, o.canonical);
    const pay = payOf(meta.pays, o.unitId);
    // At most a quorum of valid results is paid, and never the owner's own: they would pay themselves.
    let unpaid = meta.quorum;
    const owner = meta.spec.owner;
    const valid = o.valid.map((r) => {
      const paid = r.account !== owner && unpaid > 0 ? (unpaid--, pay) : 0;
      return { taskId: r.taskId, host: r.host, account: r.account, pay: paid, volunteer: this.socketOf(r) };
    });
    const invalid = o.invalid.map((r) => ({ taskId: r.taskId, host: r.host, account: r.account, pay: 0, volunteer: this.socketOf(r) }));
    // The owner's decisions prove nothing about anybody: no record, streak or ban moves.
    const verdicts = o.byOwner ? { banned: [] } : book.verdicts(valid, invalid, new Date(this.live.now()));
    this.live.observer.validated(valid.length, invalid.length);
    // Usually the output of the result that just came in, already serialised.
    const last = this.lastOutput;
    const json = last && last.value === o.canonical ? last.json : canonicalJson(o.canonical);
    // What a program's decided unit stores counts against its owner's outputs: the unit's output
    // and its valid results' (measured exactly once the job has ended, outputStorage.ts).
    if (meta.kernel === PROGRAM_KERNEL) this.deps.outputs?.add(meta.ownerId, meta.jobId, Buffer.byteLength(json) * (1 + valid.length));
    const commit = queue.enqueue({ type: "validated", jobId: meta.jobId, unitId: o.unitId, canonicalJson: json, valid, invalid, ...(meta.slice ? { slice: meta.slice } : {}) });
    dispatch.revoke(o.revoked, "unit already validated");
    commit.then(() => {
      meta.throughput.record(this.live.now());
      this.throughput.record(this.live.now());
      notices.credit(valid, invalid);
      for (const id of verdicts.banned) {
        const ban = book.activeBan([id], new Date(this.live.now()));
        this.live.log(`banned ${id}: ${ban?.reason}`);
        if (ban) notices.kick(id, ban.until, ban.reason);
      }
      this.live.emit("job", meta.jobId);
    });
    if (o.audit) this.audit(meta, o, o.audit);
    if (o.jobDone) void this.deps.lifecycle.finish(o.jobId, "completed");
    if (o.revoked.length) dispatch.dispatchAll();
    else if (!o.checked) this.offerProbation(o.taskId, [...valid, ...invalid]);
  }

  /**
   * A host on probation may start units again once one of its results is decided, and nothing
   * else offers it work: the partner of the result that decided the unit is offered it here.
   * (That result's own socket is refilled with its acknowledgement, and a check's verdict
   * offers work in check().)
   */
  private offerProbation(decidedBy: string, results: Array<{ taskId: string; volunteer?: string }>) {
    const { scheduler } = this.live;
    for (const r of results) {
      if (r.taskId === decidedBy || r.volunteer === undefined) continue;
      const c = this.live.conns.get(r.volunteer);
      if (c && scheduler.onProbation(c.key) && scheduler.freeSlots(c.key) > 0) this.deps.dispatch.dispatch(c);
    }
  }

  /**
   * The socket to tell of a verdict: the one that sent the result or, for a result read back
   * from the database (after a restart or a backtrack), the host's socket if it is connected.
   */
  private socketOf(r: ResultRef): string | undefined {
    if (r.volunteer !== undefined) return r.volunteer;
    for (const c of this.live.conns.values()) if (c.volunteerId === r.host) return c.key;
    return undefined;
  }
}
