"use client";
import { useEffect, useRef, useState } from "react";
import { VolunteerClient, type SocketLike, type VolunteerSnapshot } from "../../worker/client/volunteerClient";
import { createBrowserPool } from "../../worker/browser/pool";
import { VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import type { VolunteerSettings } from "./settings";

interface BatteryManager extends EventTarget {
  charging: boolean;
}

/** Owns the page's VolunteerClient and applies the volunteer's pause rules. */
export function useVolunteer(identity: { volunteerId: string; token: string } | null, settings: VolunteerSettings | null) {
  const client = useRef<VolunteerClient | null>(null);
  const [snap, setSnap] = useState<VolunteerSnapshot | null>(null);
  const [running, setRunning] = useState(false);
  const [hidden, setHidden] = useState(false);
  const [onBattery, setOnBattery] = useState(false);

  useEffect(() => {
    const onVis = () => setHidden(document.visibilityState === "hidden");
    onVis();
    document.addEventListener("visibilitychange", onVis);
    let battery: BatteryManager | undefined;
    const onCharge = () => setOnBattery(!!battery && !battery.charging);
    (navigator as Navigator & { getBattery?: () => Promise<BatteryManager> }).getBattery?.().then((b) => {
      battery = b;
      onCharge();
      b.addEventListener("chargingchange", onCharge);
    });
    return () => {
      document.removeEventListener("visibilitychange", onVis);
      battery?.removeEventListener("chargingchange", onCharge);
    };
  }, []);

  useEffect(() => () => client.current?.stop(), []);

  const pausedBy = !settings ? null : settings.pauseWhenHidden && hidden ? "the tab is hidden" : settings.pauseOnBattery && onBattery ? "the device runs on battery" : null;

  useEffect(() => {
    if (!settings || !client.current) return;
    client.current.setThreads(settings.threads);
    client.current.setThrottle(settings.throttle);
    client.current.setPaused(pausedBy !== null);
  }, [settings, pausedBy]);

  function start() {
    if (!identity || !settings || client.current) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${VOLUNTEER_WS_PATH}`;
    const c = new VolunteerClient({
      url, ...identity, threads: settings.threads, agent: "browser", name: navigator.userAgent.slice(0, 100),
      connect: (u) => new WebSocket(u) as unknown as SocketLike,
      createPool: (threads) => createBrowserPool({ threads, throttle: settings.throttle }),
    });
    c.subscribe(setSnap);
    c.setPaused(pausedBy !== null);
    client.current = c;
    c.start();
    setRunning(true);
  }

  function stop() {
    client.current?.stop();
    client.current = null;
    setRunning(false);
  }

  return { snap, running, start, stop, pausedBy };
}
