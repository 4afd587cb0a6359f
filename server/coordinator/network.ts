import net from "node:net";

/** An IPv6 address's first `groups` 16-bit groups, written as a prefix (`2001:db8:1::/48` for 3). */
export function ipv6Prefix(address: string, groups: number): string {
  const [head = "", tail = ""] = address.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const all = address.includes("::") ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right] : left;
  return `${all.slice(0, groups).map((g) => parseInt(g || "0", 16).toString(16)).join(":")}::/${groups * 16}`;
}

/**
 * Who a per-address budget is counted against: an IPv4 address, or an IPv6 /48 (one household
 * or customer: anyone gets a /64 of addresses, often more).
 */
export function addressKey(ip: string): string {
  const a = ip.startsWith("::ffff:") ? ip.slice(7) : ip;
  return net.isIPv6(a) ? (networkOf(a) ?? a) : a;
}

/**
 * The network a client connects from, for spreading a unit's replicas: an IPv4 /24 or an IPv6
 * /48, roughly one household, campus or hosting customer. Undefined when the address is unknown.
 */
export function networkOf(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (net.isIPv4(a)) return `${a.split(".").slice(0, 3).join(".")}.0/24`;
  if (net.isIPv6(a)) return ipv6Prefix(a, 3);
  return undefined;
}

/**
 * Whom a volunteer's errors on a unit speak for, toward the unit's maxErrors and instances
 * (VolunteerInfo.voice): a signed-in account for itself (sign-ups are limited per address), an
 * anonymous id for its network, so that ids made up in one place count once whatever work they
 * did first (one valid result each made three free ids three voices, enough to fail a job whose
 * units the server cannot recompute). Undefined (the id alone) when the network is unknown.
 */
export function errorVoice(accountId: string, userId: string | null | undefined, network: string | undefined): string | undefined {
  if (userId) return `account:${accountId}`;
  return network === undefined ? undefined : `net:${network}`;
}
