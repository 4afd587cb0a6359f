import { router, adminProcedure } from "../trpc";
import {
  createChannelInput, createRuleInput, enableRuleInput, eventsInput, idInput, markReadInput, notificationsInput, silenceInput,
  updateChannelInput, updateRuleInput,
} from "../../services/alerts/schemas";
import { createRule, deleteRule, listRules, setRuleEnabled, silenceRule, unsilenceRule, updateRule } from "../../services/alerts/rules";
import { listEvents } from "../../services/alerts/events";
import { createChannel, deleteChannel, listChannels, testChannel, updateChannel } from "../../services/alerts/channels";
import { listNotifications, markNotificationsRead, unreadNotificationCount } from "../../services/alerts/notifications";

/** Alert rules, their history, notification channels and in-app notifications: admins only. */
export const alertsRouter = router({
  rules: adminProcedure.query(({ ctx }) => listRules(ctx.deps)),
  createRule: adminProcedure.input(createRuleInput).mutation(({ ctx, input }) => createRule(ctx.deps, input)),
  updateRule: adminProcedure.input(updateRuleInput).mutation(({ ctx, input }) => updateRule(ctx.deps, input)),
  deleteRule: adminProcedure.input(idInput).mutation(({ ctx, input }) => deleteRule(ctx.deps, input.id)),
  enableRule: adminProcedure.input(enableRuleInput).mutation(({ ctx, input }) => setRuleEnabled(ctx.deps, input.id, input.enabled)),
  silence: adminProcedure.input(silenceInput).mutation(({ ctx, input }) => silenceRule(ctx.deps, input.id, input.minutes)),
  unsilence: adminProcedure.input(idInput).mutation(({ ctx, input }) => unsilenceRule(ctx.deps, input.id)),

  events: adminProcedure.input(eventsInput).query(({ ctx, input }) => listEvents(ctx.deps, input)),

  channels: adminProcedure.query(({ ctx }) => listChannels(ctx.deps)),
  createChannel: adminProcedure.input(createChannelInput).mutation(({ ctx, input }) => createChannel(ctx.deps, input)),
  updateChannel: adminProcedure.input(updateChannelInput).mutation(({ ctx, input }) => updateChannel(ctx.deps, input)),
  deleteChannel: adminProcedure.input(idInput).mutation(({ ctx, input }) => deleteChannel(ctx.deps, input.id)),
  testChannel: adminProcedure.input(idInput).mutation(({ ctx, input }) => testChannel(ctx.deps, input.id)),

  notifications: adminProcedure.input(notificationsInput).query(({ ctx, input }) => listNotifications(ctx.deps, input)),
  markRead: adminProcedure.input(markReadInput).mutation(({ ctx, input }) => markNotificationsRead(ctx.deps, input)),
  unreadCount: adminProcedure.query(({ ctx }) => unreadNotificationCount(ctx.deps)),
});
