"use client";

export interface VolunteerSettings {
  threads: number;
  /** Share of time the workers compute, 0.1..1. */
  throttle: number;
  pauseWhenHidden: boolean;
  pauseOnBattery: boolean;
}

const SETTINGS_KEY = "tabgrid.volunteer.settings";
const IDENTITY_KEY = "tabgrid.volunteer.identity";

export function defaultThreads() {
  return Math.max(1, (navigator.hardwareConcurrency || 2) - 1);
}

export function loadSettings(): VolunteerSettings {
  const defaults = { threads: defaultThreads(), throttle: 1, pauseWhenHidden: false, pauseOnBattery: true };
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}") };
  } catch {
    return defaults;
  }
}

export function saveSettings(s: VolunteerSettings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
}

function randomId(bytes: number) {
  const a = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...a)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** This browser's volunteer id and the secret that proves it, created on first visit. */
export function loadIdentity(): { volunteerId: string; token: string } {
  try {
    const saved = JSON.parse(localStorage.getItem(IDENTITY_KEY) ?? "null");
    if (saved?.volunteerId && saved?.token) return saved;
  } catch {
    /* a corrupt entry is replaced below */
  }
  const identity = { volunteerId: randomId(12), token: randomId(24) };
  localStorage.setItem(IDENTITY_KEY, JSON.stringify(identity));
  return identity;
}
