import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { alertRulesChanged, runningManager } from "../../monitoring/alerts/registry";
import type { CreateRuleInput, UpdateRuleInput } from "./schemas";

const ruleSelect = {
  id: true, name: true, metric: true, comparison: true, threshold: true, hysteresis: true, forSeconds: true, repeatMinutes: true,
  severity: true, enabled: true, silencedUntil: true, description: true, createdAt: true,
} as const;

function isUniqueViolation(e: unknown): boolean {
  return (e as { code?: string }).code === "P2002";
}

function isNotFound(e: unknown): boolean {
  return (e as { code?: string }).code === "P2025";
}

async function mutate<T>(deps: AppDeps, id: string | null, name: string | undefined, write: () => Promise<T>): Promise<T> {
  try {
    const out = await write();
    await alertRulesChanged(deps.db);
    return out;
  } catch (e) {
    if (isUniqueViolation(e)) throw new UserError("CONFLICT", `There is already a rule named "${name}".`);
    if (isNotFound(e)) throw new UserError("NOT_FOUND", `No alert rule ${id}.`);
    throw e;
  }
}

/**
 * Every rule with its live state from the running alert manager ("inactive", "pending",
 * "firing"; null for disabled rules or when alerting is not running in this process).
 */
export async function listRules(deps: AppDeps) {
  const rows = await deps.db.alertRule.findMany({ select: ruleSelect, orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
  const states = runningManager(deps.db)?.states();
  const now = Date.now();
  return rows.map((r) => {
    const s = states?.get(r.id);
    return {
      ...r,
      silenced: r.silencedUntil !== null && r.silencedUntil.getTime() > now,
      state: s?.phase ?? null,
      since: s?.since != null ? new Date(s.since) : null,
      lastValue: s?.lastValue ?? null,
    };
  });
}

export function createRule(deps: AppDeps, input: CreateRuleInput) {
  return mutate(deps, null, input.name, () => deps.db.alertRule.create({ data: input, select: ruleSelect }));
}

export function updateRule(deps: AppDeps, input: UpdateRuleInput) {
  const { id, ...data } = input;
  return mutate(deps, id, data.name, () => deps.db.alertRule.update({ where: { id }, data, select: ruleSelect }));
}

/** Deletes the rule; its history stays (AlertEvent.ruleId becomes null, the name is kept). */
export function deleteRule(deps: AppDeps, id: string) {
  return mutate(deps, id, undefined, () => deps.db.alertRule.delete({ where: { id }, select: { id: true } }));
}

export function setRuleEnabled(deps: AppDeps, id: string, enabled: boolean) {
  return mutate(deps, id, undefined, () => deps.db.alertRule.update({ where: { id }, data: { enabled }, select: ruleSelect }));
}

/** Silences the rule for `minutes` from now: still evaluated and recorded, nobody notified. */
export function silenceRule(deps: AppDeps, id: string, minutes: number) {
  const until = new Date(Date.now() + minutes * 60_000);
  return mutate(deps, id, undefined, () => deps.db.alertRule.update({ where: { id }, data: { silencedUntil: until }, select: ruleSelect }));
}

export function unsilenceRule(deps: AppDeps, id: string) {
  return mutate(deps, id, undefined, () => deps.db.alertRule.update({ where: { id }, data: { silencedUntil: null }, select: ruleSelect }));
}
