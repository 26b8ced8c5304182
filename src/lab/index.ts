/** The network-namespace lab (docs/LAB.md): `tether lab up|down|status` and the end-to-end tests' helpers. */
export { labUp, labDown, labStatus, labConfig, ensureLabTools, isAlive, logTail, LabToolsError } from './lab.js';
export type { LabUpOptions, LabOptions, LabInfo, LabProcess, LabState, LabStatus, WireGuardPeerStatus } from './lab.js';
export { labNames, LAB, LINKS, DEFAULT_PREFIX, PREFIX_PATTERN, RUN_ROOT } from './topology.js';
export type { LabNames } from './topology.js';
export { inNamespace, inNamespaceOk, run, runOk, LabCommandError, formatCommand } from './exec.js';
export type { CommandResult, RunOptions } from './exec.js';
export { httpGet, httpGetMany, udpExchange, grePeer, grePeerArgs } from './helpers.js';
export type { HttpResult, HttpOptions, UdpResult, UdpOptions, GrePeerOptions, GrePeerResult, GreReply, GreReplyInner, ServerReply } from './helpers.js';
export { cutSiteCPrimary, restoreSiteCPrimary, siteCUnderlayLink } from './site-c.js';
export { measureSiteCFailover, startDownload, stallAfter, startUdpStream, watchHealth, watchLink, linkRxBytes } from './failover.js';
export type { FailoverMeasurement, FailoverOptions, Download, DownloadResult, DownloadGap, DownloadOptions, LinkWatcher, LinkWatcherOptions, HealthSighting, HealthWatcher, UdpStream, UdpStreamCounts, UdpStreamOptions } from './failover.js';
