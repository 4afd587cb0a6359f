/** Inputs of the alerts API, validated at the router and typed for the services. */
import { z } from "zod";
import { SERIES, type SeriesName } from "../../monitoring/series";
import { emailAddress, webhookUrl } from "../../monitoring/notify/channels";

const seriesNames = Object.keys(SERIES) as [SeriesName, ...SeriesName[]];
const id = z.string().min(1).max(100);

const ruleFields = {
  name: z.string().trim().min(1).max(100),
  metric: z.enum(seriesNames, { error: `must be one of the dashboard series: ${seriesNames.join(", ")}` }),
  comparison: z.enum([">", "<"]),
  threshold: z.number(),
  hysteresis: z.number().min(0),
  forSeconds: z.number().int().min(0).max(7 * 86400),
  // 0: never remind.
  repeatMinutes: z.number().int().min(0).max(7 * 24 * 60),
  severity: z.enum(["warning", "critical"]),
  enabled: z.boolean(),
  description: z.string().trim().max(1000),
};

export const createRuleInput = z.object({
  ...ruleFields,
  hysteresis: ruleFields.hysteresis.default(0),
  forSeconds: ruleFields.forSeconds.default(60),
  repeatMinutes: ruleFields.repeatMinutes.default(60),
  severity: ruleFields.severity.default("warning"),
  enabled: ruleFields.enabled.default(true),
  description: ruleFields.description.default(""),
});
export type CreateRuleInput = z.infer<typeof createRuleInput>;

export const updateRuleInput = z.object({ id, ...ruleFields }).partial().required({ id: true });
export type UpdateRuleInput = z.infer<typeof updateRuleInput>;

export const idInput = z.object({ id });
export const enableRuleInput = z.object({ id, enabled: z.boolean() });
export const silenceInput = z.object({ id, minutes: z.number().positive().max(30 * 24 * 60) });

export const eventsInput = z
  .object({
    ruleId: id.optional(),
    /** The `nextCursor` of the previous page. */
    cursor: z.number().int().positive().optional(),
    limit: z.number().int().min(1).max(200).default(50),
  })
  .default({ limit: 50 });

const webhookChannel = z.object({
  kind: z.literal("webhook"),
  url: webhookUrl,
  format: z.enum(["slack", "alertmanager"]).default("slack"),
});
const emailChannel = z.object({ kind: z.literal("email"), to: emailAddress });
export const channelConfigInput = z.discriminatedUnion("kind", [webhookChannel, emailChannel]);
export type ChannelConfigInput = z.infer<typeof channelConfigInput>;

const channelName = z.string().trim().min(1).max(100);
export const createChannelInput = z.discriminatedUnion("kind", [
  webhookChannel.extend({ name: channelName, enabled: z.boolean().default(true) }),
  emailChannel.extend({ name: channelName, enabled: z.boolean().default(true) }),
]);
export type CreateChannelInput = z.infer<typeof createChannelInput>;

/** `config` replaces the whole configuration (kind included) when given. */
export const updateChannelInput = z.object({ id, name: channelName.optional(), enabled: z.boolean().optional(), config: channelConfigInput.optional() });
export type UpdateChannelInput = z.infer<typeof updateChannelInput>;

export const notificationsInput = z
  .object({
    unreadOnly: z.boolean().default(false),
    cursor: z.number().int().positive().optional(),
    limit: z.number().int().min(1).max(200).default(50),
  })
  .default({ unreadOnly: false, limit: 50 });

/** Either some notifications by id, or all of them. */
export const markReadInput = z.union([z.object({ ids: z.array(z.number().int().positive()).min(1).max(1000) }), z.object({ all: z.literal(true) })]);
export type MarkReadInput = z.infer<typeof markReadInput>;
