import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { notify, type AlertNotice } from "../../monitoring/notify";
import { parseChannelConfig } from "../../monitoring/notify/channels";
import { serverNotifyContext } from "../../monitoring/alerts/context";
import type { ChannelConfigInput, CreateChannelInput, UpdateChannelInput } from "./schemas";

const channelSelect = { id: true, name: true, kind: true, config: true, enabled: true, createdAt: true } as const;

type ChannelRow = { id: string; name: string; kind: string; config: string; enabled: boolean; createdAt: Date };

function view(row: ChannelRow) {
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(row.config) as Record<string, unknown>;
  } catch {}
  return { id: row.id, name: row.name, kind: row.kind as "webhook" | "email", config, enabled: row.enabled, createdAt: row.createdAt };
}

/** The stored form: kind in its column, the rest as JSON (webhook { url, format }, email { to }). */
function stored(c: ChannelConfigInput) {
  return c.kind === "webhook"
    ? { kind: "webhook", config: JSON.stringify({ url: c.url, format: c.format }) }
    : { kind: "email", config: JSON.stringify({ to: c.to }) };
}

async function find(deps: AppDeps, id: string): Promise<ChannelRow> {
  const row = await deps.db.notificationChannel.findUnique({ where: { id }, select: channelSelect });
  if (!row) throw new UserError("NOT_FOUND", `No notification channel ${id}.`);
  return row;
}

export async function listChannels(deps: AppDeps) {
  const rows = await deps.db.notificationChannel.findMany({ select: channelSelect, orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
  return rows.map(view);
}

export async function createChannel(deps: AppDeps, input: CreateChannelInput) {
  const { name, enabled, ...config } = input;
  const row = await deps.db.notificationChannel.create({ data: { name, enabled, ...stored(config) }, select: channelSelect });
  return view(row);
}

export async function updateChannel(deps: AppDeps, input: UpdateChannelInput) {
  await find(deps, input.id);
  const row = await deps.db.notificationChannel.update({
    where: { id: input.id },
    data: { name: input.name, enabled: input.enabled, ...(input.config ? stored(input.config) : {}) },
    select: channelSelect,
  });
  return view(row);
}

export async function deleteChannel(deps: AppDeps, id: string) {
  await find(deps, id);
  await deps.db.notificationChannel.delete({ where: { id } });
  return { id };
}

/**
 * Sends a "test" notice through one channel (enabled or not, so it can be tried before it is
 * switched on) and reports how it went instead of throwing: the admin page shows the reason.
 * The attempt is recorded in the alert history as a "test" event.
 */
export async function testChannel(deps: AppDeps, id: string): Promise<{ ok: true } | { ok: false; error: string }> {
  const row = await find(deps, id);
  const target = parseChannelConfig(row);
  const name = `Test of "${row.name}"`;
  let result: { ok: true } | { ok: false; error: string };
  if (!target) {
    result = { ok: false, error: "the channel's configuration is unreadable; edit and save it again" };
  } else {
    const ctx = serverNotifyContext(deps);
    const notice: AlertNotice = {
      name: "Tabgrid test notification",
      state: "test",
      severity: "info",
      message: `Test notification from Tabgrid (${ctx.instance}) to channel "${row.name}": if you can read this, alerts will reach you here.`,
      at: Date.now(),
    };
    try {
      await notify(target, notice, ctx);
      result = { ok: true };
    } catch (e) {
      result = { ok: false, error: (e as Error).message };
    }
  }
  await deps.db.alertEvent.create({
    data: { name, state: "test", message: result.ok ? `Test notification delivered to "${row.name}"` : `Test notification to "${row.name}" failed: ${result.error}` },
    select: { id: true },
  });
  return result;
}
