"use client";
import { RulesCard } from "./RulesCard";
import { ChannelsCard } from "./ChannelsCard";
import { HistoryCard, NotificationsCard } from "./HistoryCard";

export default function AdminAlertsPage() {
  return (
    <div className="stack">
      <RulesCard />
      <ChannelsCard />
      <div className="two-col">
        <NotificationsCard />
        <HistoryCard />
      </div>
    </div>
  );
}
