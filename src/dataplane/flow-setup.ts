/**
 * The two records flow setup passes between its steps (Pipeline.decideSetup, then commitSetup):
 *
 *   decideSetup ── reads the firewall, the routes, NAT mappings and other flows; changes nothing
 *       │           fills SetupDecision (always) and SetupTrace (only when one is passed: explain)
 *       ▼
 *   commitSetup ── takes the NAT mapping, resolves a clash, creates the flow, counts (pipeline only)
 *
 * Explain runs the very same decideSetup with a trace and never commits, so what it tells is what
 * setup decides, and it has no side effects. Both records are preallocated and plain numbers: the
 * pipeline owns one decision and passes a null trace, so setup builds no strings and allocates nothing.
 */
import { FlowKey } from '../flow/flow-table.js';
import { NatEndpoint } from '../nat/snat-pool.js';
import { NO_MATCH } from '../policy/firewall.js';
import { NO_ROUTE } from '../route/route-table.js';

/** What commitSetup needs: everything decided, nothing taken yet. */
export class SetupDecision {
  /** FLAG_* bits the flow will carry (pipeline.ts). FLAG_POOL: commit takes a mapping; FLAG_CLASH: commit finds a free port. */
  flags = 0;
  /** The next hop as recorded in the flow (before failover to a healthy onramp of its site). */
  hop = -1;
  /** Firewall result for the packet as addressed (a rule index, or NO_MATCH for the default action). */
  rule = NO_MATCH;
  /** Gateway at setup (GatewayPolicy.decide* with no name): a rule index, GATEWAY_NO_RULE or GATEWAY_NEED_NAME. */
  gateway = -1;
  /** The firewall was asked (`rule` is its answer): the pipeline counts the rule's hit (firewallRuleHits). */
  firewallAsked = false;
  /** The tuple hash: ECMP choice and the clash-port search start. */
  hash = 0;
  /**
   * The reply key as far as deciding knows it: the original key reversed, in the next hop's zone.
   * Commit completes it with the external endpoint (source NAT, hairpin) or the free port (clash).
   */
  readonly reply = new FlowKey();
  /** Hairpin: the internal endpoint that owns the addressed external endpoint. */
  readonly peer = new NatEndpoint();
  /** Source NAT and hairpin: the external address (commit: the mapping taken; hairpin decide: the sender's existing one). */
  readonly ext = new Uint32Array(4);
  /**
   * Hairpin with lanes: the sender's external port when its mapping is another lane's (SnatPool.peekOtherLane, its
   * address in `ext`): commit borrows it instead of taking a mapping here. -1: none.
   */
  borrowedPort = -1;
  /** Hairpin over IPv6: the packet's source and the peer's address, as the firewall reads them (words 0..3, 4..7). */
  readonly peerAddr = new Uint32Array(8);
}

/**
 * What explain renders and commit does not need. Filled by decideSetup only when passed; fields a
 * setup did not reach keep their cleared values.
 */
export class SetupTrace {
  /** The firewall was asked (the packet passed the checks before policy). */
  firewallAsked = false;
  /** The gateway was asked at setup (SetupDecision.gateway holds its answer). */
  gatewayAsked = false;
  /** The route the lookup chose, NO_ROUTE when none matched or none was looked up. */
  route = NO_ROUTE;
  /**
   * Source NAT: the endpoint's existing mapping's external port (its address in natAddr), or -1
   * when it has none yet. Read with SnatPool.peek, so nothing is taken: a new mapping's port is what
   * commit finds free, and explain cannot name it without allocating.
   */
  natPort = -1;
  readonly natAddr = new Uint32Array(4);
  /** Hairpin: an internal endpoint owns the addressed external endpoint (SetupDecision.peer). */
  hairpinPeerFound = false;
  /** Hairpin: the firewall was asked again for the peer's real address; its result. */
  hairpinAsked = false;
  hairpinRule = NO_MATCH;
  /** Hairpin: the peer's mapping does not admit the sender yet (FLAG_FILTERED): the flow is set up, the packet dropped. */
  hairpinFiltered = false;

  clear(): void {
    this.firewallAsked = false;
    this.gatewayAsked = false;
    this.route = NO_ROUTE;
    this.natPort = -1;
    this.natAddr.fill(0);
    this.hairpinPeerFound = false;
    this.hairpinAsked = false;
    this.hairpinRule = NO_MATCH;
    this.hairpinFiltered = false;
  }
}
