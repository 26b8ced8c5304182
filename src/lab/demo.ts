/**
 * The main job (`tether lab demo`, the README's quick start): the lab's two WireGuard sites and its IPsec
 * site (strongSwan), all 10.0.1.10 on 10.0.1.0/24, talk through the edge at the same time — first with
 * Automatic Return Routing, then without it (the two WireGuard sites) — and the result says what each site
 * got back.
 *
 * Every server answer is unique per request and names the request it answers (its path or payload
 * carries the asking site), so "the site got its own reply" is checked, not assumed.
 */
import { type TetherConfig } from '../config/index.js';
import { defaultConfig } from './config.js';
import { httpGetMany, udpExchange, type ServerReply } from './helpers.js';
import { ensureLabTools, labDown, labUp } from './lab.js';
import { LAB } from './topology.js';

export const REQUESTS_PER_SITE = 20;
const SITES = [
  { name: 'site-a', onramp: 'site-a-wg' },
  { name: 'site-b', onramp: 'site-b-wg' },
] as const;

export interface DemoSiteResult {
  site: string;
  /** Answers that came back to this site and were for this site's requests. */
  own: number;
  /** Answers that came back to this site for the other site's requests. */
  foreign: number;
  /** Requests that got no answer. */
  lost: number;
  /** Addresses the server saw this site's requests come from. */
  seenAs: string[];
}

/** The lab's configuration without ARR: both sites announce 10.0.1.0/24; the routing table decides replies. */
export function arrOffConfig(): TetherConfig {
  const cfg = defaultConfig();
  for (const o of cfg.onramps) {
    if (o.name === 'site-a-wg' || o.name === 'site-b-wg') o.automatic_return_routing = false;
  }
  for (const s of SITES) {
    cfg.routes.push({ prefix: LAB.siteLan, next_hop: { onramp: s.onramp }, priority: 100, weight: 1 });
  }
  return cfg;
}

function parseReply(text: string | undefined): ServerReply | null {
  try {
    return text ? (JSON.parse(text) as ServerReply) : null;
  } catch {
    return null;
  }
}

/** HTTP from every site in `names` (site name → its host's namespace) at once to `server`; each request's path names its site. */
export async function httpRound(names: Record<string, string>, server: string): Promise<DemoSiteResult[]> {
  const sites = Object.keys(names);
  const rounds = await Promise.all(
    sites.map((site) => httpGetMany(names[site], `http://${server}/${site}`, REQUESTS_PER_SITE, { timeoutMs: 3000 })),
  );
  return sites.map((site, i) => {
    const result: DemoSiteResult = { site, own: 0, foreign: 0, lost: 0, seenAs: [] };
    for (const r of rounds[i]) {
      const reply = r.ok ? parseReply(r.body) : null;
      if (!reply) {
        result.lost++;
        continue;
      }
      if (reply.path?.startsWith(`GET /${site}?`)) result.own++;
      else result.foreign++;
      if (!result.seenAs.includes(reply.client.address)) result.seenAs.push(reply.client.address);
    }
    return result;
  });
}

/** UDP echo from both sites at once; each payload names its site. */
export async function udpRound(names: Record<string, string>, server: string): Promise<DemoSiteResult[]> {
  return Promise.all(
    Object.keys(names).map(async (site) => {
      const answers = await Promise.all(
        Array.from({ length: REQUESTS_PER_SITE }, (_, i) => udpExchange(names[site], server, LAB.echoPort, `${site} ${i}`, { timeoutMs: 2000 })),
      );
      const result: DemoSiteResult = { site, own: 0, foreign: 0, lost: 0, seenAs: [] };
      for (const a of answers) {
        if (a.kind !== 'reply') {
          result.lost++;
          continue;
        }
        const reply = parseReply(a.payload);
        if (reply?.payload?.startsWith(`${site} `)) result.own++;
        else result.foreign++;
        if (reply && !result.seenAs.includes(reply.client.address)) result.seenAs.push(reply.client.address);
      }
      return result;
    }),
  );
}

function describe(r: DemoSiteResult): string {
  return `${r.site} (${LAB.siteHost}): ${r.own} of ${REQUESTS_PER_SITE} answers came back to it` +
    (r.foreign ? `, ${r.foreign} answers meant for another site` : '') +
    (r.lost ? `, ${r.lost} lost` : '') +
    (r.seenAs.length ? `; the server saw it as ${r.seenAs.join(', ')}` : '');
}

export interface DemoOptions {
  prefix?: string;
  print: (line: string) => void;
}

/** Runs both halves; true when ARR delivered every answer to the site that asked. */
export async function runLabDemo(opts: DemoOptions): Promise<boolean> {
  const { print } = opts;
  await ensureLabTools();
  let arrOk = true;
  try {
    print('Building the lab: site-a and site-b over WireGuard (wireguard-go), site-d over IPsec (strongSwan), all 10.0.1.0/24 with host 10.0.1.10; a data center, the Internet; tether as the edge.');
    const on = await labUp({ prefix: opts.prefix, ipsecSite: true });
    const names: Record<string, string> = { 'site-a': on.names.siteA, 'site-b': on.names.siteB, 'site-d': on.names.siteD };
    print('\nAutomatic Return Routing ON');
    for (const [label, server, round] of [
      ['HTTP to the Internet server 203.0.113.10', LAB.internet.server, httpRound],
      ['HTTP to the data-center server 172.16.0.20', LAB.dc.server, httpRound],
      ['UDP echo to the Internet server', LAB.internet.server, udpRound],
    ] as const) {
      print(`  ${label}, ${REQUESTS_PER_SITE} requests from each site at once:`);
      for (const r of await round(names, server)) {
        print(`    ${describe(r)}`);
        if (r.own !== REQUESTS_PER_SITE) arrOk = false;
      }
    }
    const refused = await Promise.all(Object.keys(names).map((site) => udpExchange(names[site], LAB.internet.server, LAB.closedUdpPort, 'anyone?')));
    print(`  UDP to a closed port: ${Object.keys(names).map((s, i) => `${s} got ${refused[i].kind === 'refused' ? 'ICMP port unreachable' : refused[i].kind}`).join('; ')}`);
    if (refused.some((r) => r.kind !== 'refused')) arrOk = false;
    await labDown({ prefix: opts.prefix });

    print('\nAutomatic Return Routing OFF (both sites announce 10.0.1.0/24; the routing table picks where replies go)');
    const off = await labUp({ prefix: opts.prefix, config: arrOffConfig() });
    const offNames = { 'site-a': off.names.siteA, 'site-b': off.names.siteB };
    print(`  UDP echo to the Internet server, ${REQUESTS_PER_SITE} requests from each site at once:`);
    for (const r of await udpRound(offNames, LAB.internet.server)) print(`    ${describe(r)}`);
    print(`  HTTP to the data-center server, ${REQUESTS_PER_SITE} requests from each site at once:`);
    for (const r of await httpRound(offNames, LAB.dc.server)) print(`    ${describe(r)}`);
    print(
      arrOk
        ? '\nWith ARR every answer reached the site that asked; without it, answers for one site went to the other and were lost.'
        : '\nWith ARR some answers did not reach the site that asked: see the lines above and the edge log.',
    );
  } finally {
    await labDown({ prefix: opts.prefix });
  }
  return arrOk;
}
