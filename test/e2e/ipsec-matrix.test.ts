/**
 * Issue 9's proposal matrix WITH traffic through the daemon: the lab (labUp({ ipsecSite: true })) with tether's
 * site-d onramp responding on 192.168.106.1 and site-d's strongSwan (kernel-libipsec) dialling in. Per row the
 * onramp's proposals are set through the API (PATCH /v1/onramps/site-d: the IKE engine's updatePeer ends the
 * old SAs), strongSwan is reconfigured to the same single proposal and initiates, and test/support/strongswan.ts's
 * checkProposal checks what strongSwan negotiated and that UDP echoes from the site's host 10.0.1.10 cross the
 * tunnel to the Internet server (through tether's ESP data path, forwarding and SNAT); ESP rows rekey the child
 * with the row's PFS group (RFC 7296 §1.3.1) and echo again. tether's own view of each row (GET /v1/stats: its
 * IKE SA and child SA suites, ESP packet counters) is checked and printed beside strongSwan's.
 *
 * One lab for all rows (reconfigured per row). Root only; fails loudly when a tool is missing, never skips.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { LAB, type LabInfo } from '../../src/lab/index.js';
import { SITE_D_ONRAMP } from '../../src/lab/config.js';
import { siteDStrongSwan } from '../../src/lab/site-d.js';
import { sleep } from '../../src/lab/exec.js';
import { edgeApi } from '../support/live-site.js';
import {
  checkProposal, formatMatrix, missingStrongSwan, proposalMatrix, removeStaleStrongSwanRuns,
  type IpsecPeerSide, type IpsecSite, type IpsecTarget, type MatrixRow, type ProposalCase,
} from '../support/strongswan.js';
import { labUpForTest, requireRoot } from '../support/lab-test.js';

const PREFIX = `m${randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4)}`;
const TARGET: IpsecTarget = { address: LAB.internet.server, udpPort: LAB.echoPort, httpPort: LAB.httpPort };
/** How long tether may take to drop the SAs the site deleted (one INFORMATIONAL exchange). */
const RESET_TIMEOUT_MS = 5000;
const POLL_MS = 100;

/** What GET /v1/stats shows of an ipsec onramp (docs/API.md "IPsec status"), the fields this test reads. */
interface TetherChild { algorithms: string; counters: { packetsIn: number; packetsOut: number } | null }
interface TetherIkeSa { state: string; algorithms: string; children: TetherChild[] }

let lab: LabInfo;
let site: IpsecSite;

async function tetherSas(): Promise<TetherIkeSa[]> {
  const r = await edgeApi(lab, 'GET', '/v1/stats');
  assert.equal(r.status, 200, `GET /v1/stats: ${JSON.stringify(r.body)}`);
  const onramp = (r.body as { onramps: Array<{ name: string; ipsec?: TetherIkeSa[] }> }).onramps.find((o) => o.name === SITE_D_ONRAMP);
  if (onramp?.ipsec === undefined) throw new Error(`GET /v1/stats: no ipsec onramp ${SITE_D_ONRAMP}`);
  return onramp.ipsec;
}

/** tether's site-d onramp as the matrix's other side: proposals through the API, SAs read from /v1/stats. */
const tetherSide: IpsecPeerSide = {
  name: 'tether (daemon, site-d onramp)',
  async setProposals(ike, esp) {
    const r = await edgeApi(lab, 'PATCH', `/v1/onramps/${SITE_D_ONRAMP}`, { ipsec: { ike_proposals: [ike], esp_proposals: [esp] } });
    if (r.status !== 200) throw new Error(`PATCH /v1/onramps/${SITE_D_ONRAMP} (${ike} | ${esp}): ${r.status} ${JSON.stringify(r.body)}`);
  },
  async reset() {
    // The site's terminate sent a DELETE; a changed proposal (setProposals) ends whatever is left anyway.
    const deadline = Date.now() + RESET_TIMEOUT_MS;
    while ((await tetherSas()).length > 0 && Date.now() < deadline) await sleep(POLL_MS);
  },
  async ikeSaCount() {
    return (await tetherSas()).filter((s) => s.state === 'established').length;
  },
  initiate() {
    return Promise.reject(new Error('the matrix has the site initiate (the onramp is mode: respond)'));
  },
};

/** tether's view of a row, taken while its SA is still up (the next row's terminate ends it). */
interface TetherView { ike: string; esp: string; packetsIn: number; packetsOut: number; ikeSas: number }

async function tetherView(): Promise<TetherView> {
  const sas = (await tetherSas()).filter((s) => s.state === 'established');
  const children = sas.flatMap((s) => s.children);
  return {
    ike: sas.map((s) => s.algorithms).join(','),
    esp: children.map((c) => c.algorithms).join(','),
    packetsIn: children.reduce((a, c) => a + (c.counters?.packetsIn ?? 0), 0),
    packetsOut: children.reduce((a, c) => a + (c.counters?.packetsOut ?? 0), 0),
    ikeSas: sas.length,
  };
}

/** The ESP suite tether holds after the row: the row's proposal (with its PFS group once rekeyed) — RFC 7296 §1.3.1. */
function tetherEspExpected(c: ProposalCase): string {
  return c.rekeyChild ? c.esp : c.esp.split('-').filter((k) => !/^(modp|ecp|curve)/.test(k)).join('-');
}

before(async (t) => {
  requireRoot('the IPsec matrix test needs root (network namespaces, TUN devices); CI runs it as root');
  const missing = missingStrongSwan();
  if (missing !== null) throw new Error(missing);
  await removeStaleStrongSwanRuns();
  lab = await labUpForTest(t, { prefix: PREFIX, ipsecSite: true });
  site = { swan: siteDStrongSwan(lab.names), hostNs: lab.names.siteD };
});

test('issue 9\'s proposal matrix: every IKE and ESP proposal (and PFS group on a child rekey) negotiates between strongSwan and the daemon and carries UDP echoes', async () => {
  const cases = proposalMatrix();
  const rows: MatrixRow[] = [];
  const views: Array<TetherView | null> = [];
  for (const c of cases) {
    const row = await checkProposal(site, tetherSide, TARGET, c);
    rows.push(row);
    views.push(row.error === undefined ? await tetherView() : null);
  }
  const tetherLines = cases.map((c, i) => {
    const v = views[i];
    return v === null ? `  ${c.id}: -` : `  ${c.id}: IKE ${v.ike}, ESP ${v.esp}, ESP packets in ${v.packetsIn} out ${v.packetsOut}`;
  });
  process.stdout.write(`${formatMatrix(rows, tetherSide.name)}\ntether's side (GET /v1/stats):\n${tetherLines.join('\n')}\n`);

  const failed = rows.filter((r) => !r.ok).map((r) => `${r.id}: ${r.error ?? `IKE ${r.ikeSeen}, ESP ${r.espSeen} / ${r.espAfterRekey ?? ''}, echoes ${r.echoes} ${r.echoesAfterRekey ?? ''}`}`);
  assert.deepEqual(failed, [], 'every row negotiates what was proposed and carries traffic');
  cases.forEach((c, i) => {
    const v = views[i]!;
    assert.equal(v.ikeSas, 1, `${c.id}: tether holds one IKE SA with the site`);
    assert.equal(v.ike, c.ike, `${c.id}: tether's IKE suite`);
    assert.equal(v.esp, tetherEspExpected(c), `${c.id}: tether's ESP suite`);
    // The echoes after the last (re)key went through tether's ESP data path both ways.
    assert.ok(v.packetsIn >= 3 && v.packetsOut >= 3, `${c.id}: ESP packets in ${v.packetsIn}, out ${v.packetsOut}`);
  });
});
