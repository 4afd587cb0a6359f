"use client";
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { VolunteerClient, type SocketLike, type VolunteerSnapshot } from "../../worker/client/volunteerClient";
import { createBrowserVolunteerPool } from "../../worker/browser/sandboxVolunteerPool";
import { BlobCache, prepareTask } from "../../worker/client/prepareTask";
import { browserHostName } from "../../worker/client/hostName";
import { VOLUNTEER_WS_PATH } from "../../worker/protocol/messages";
import { loadIdentity, loadSettings, saveSettings, type VolunteerSettings } from "./volunteerSettings";

interface BatteryManager extends EventTarget {
  charging: boolean;
}

type Volunteer = ReturnType<typeof useVolunteerState>;
const VolunteerContext = createContext<Volunteer | null>(null);

/**
 * Lives in the root layout, so volunteering goes on while the user moves between pages of
 * the same tab; only Stop (or closing the tab) ends it.
 */
export function VolunteerProvider({ children }: { children: ReactNode }) {
  return <VolunteerContext.Provider value={useVolunteerState()}>{children}</VolunteerContext.Provider>;
}

export function useVolunteer(): Volunteer {
  const v = useContext(VolunteerContext);
  if (!v) throw new Error("useVolunteer needs a VolunteerProvider");
  return v;
}

/** Owns the tab's VolunteerClient, its settings and identity, and applies the pause rules. */
function useVolunteerState() {
  const [identity, setIdentity] = useState<{ volunteerId: string; token: string } | null>(null);
  const [settings, setSettings] = useState<VolunteerSettings | null>(null);
  useEffect(() => {
    setIdentity(loadIdentity());
    setSettings(loadSettings());
  }, []);
  const updateSettings = (patch: Partial<VolunteerSettings>) => {
    setSettings((s) => {
      const next = { ...s!, ...patch };
      saveSettings(next);
      return next;
    });
  };
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
    const blobs = new BlobCache(location.origin);
    const c = new VolunteerClient({
      url, ...identity, threads: settings.threads, agent: "browser", name: browserHostName(navigator.userAgent, identity.volunteerId),
      connect: (u) => new WebSocket(u) as unknown as SocketLike,
      // Built-in kernels in Web Workers; uploaded programs in workers of a sandboxed iframe.
      createPool: (threads) => createBrowserVolunteerPool({ threads, throttle: settings.throttle }),
      prepare: (task) => prepareTask(task, blobs),
      prefetch: (hash, token) => blobs.prefetch(hash, token),
    });
    c.subscribe(atMostEvery(SNAPSHOT_MS, setSnap));
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

  return { identity, settings, updateSettings, snap, running, start, stop, pausedBy };
}

/** How often the page shows the volunteer's state at most. */
const SNAPSHOT_MS = 250;

/**
 * `fn` with the latest value, at most once every `ms` (the first at once, the last never lost).
 * The client reports every task's start and end; re-rendering the page for each took the
 * tab's main thread, the one that hands out the next unit, for several ms a task.
 */
function atMostEvery<T>(ms: number, fn: (v: T) => void): (v: T) => void {
  let last = -Infinity;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let latest: T;
  return (v) => {
    latest = v;
    if (timer !== undefined) return;
    const wait = last + ms - performance.now();
    if (wait <= 0) {
      last = performance.now();
      fn(v);
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      last = performance.now();
      fn(latest);
    }, wait);
  };
}
