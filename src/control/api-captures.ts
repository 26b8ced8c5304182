/**
 * /v1/captures (docs/API.md, docs/CAPTURE.md): start a bounded packet capture of an onramp, a site or a flow,
 * read its status, download it as pcapng, stop it, delete it. Registered on the app buildApi made: the same
 * guard, except that captures need the token even with api.open_reads (they hold the sites' packets).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { CAPTURE_DEFAULTS, CAPTURE_LIMITS, CaptureError, MAX_CAPTURES, type CaptureHub, type CaptureSession } from './capture.js';
import { CAPTURES_PATH } from './api-guard.js';
import { laneOfFlowNumber } from './flow-walk.js';
import { laneProblem, type OtherLanes } from './lane-view.js';

/** IANA media type for pcapng (draft-ietf-opsawg-pcapng section 10.2). */
export const PCAPNG_CONTENT_TYPE = 'application/x-pcapng';

const Problem = Type.Object({ error: Type.String(), problems: Type.Array(Type.Object({ path: Type.String(), message: Type.String() })) });

const CaptureBody = Type.Object({
  onramp: Type.Optional(Type.String({ description: 'capture this onramp (by name)' })),
  site: Type.Optional(Type.String({ description: "capture every onramp of this site (by name)" })),
  flow: Type.Optional(Type.String({ description: 'capture one flow, by its id as /v1/flows lists it (4-17)' })),
  filter: Type.Optional(Type.String({ description: 'tcpdump-like filter: host, net, port, src/dst, tcp/udp/icmp/ip/ip6, and/or/not, parentheses', maxLength: 1024 })),
  count: Type.Optional(Type.Integer({ description: `stop after this many packets (default ${CAPTURE_DEFAULTS.count})`, minimum: 1, maximum: CAPTURE_LIMITS.count })),
  bytes: Type.Optional(Type.Integer({ description: `stop before the file exceeds this many bytes (default ${CAPTURE_DEFAULTS.bytes})`, minimum: 1024, maximum: CAPTURE_LIMITS.bytes })),
  duration_s: Type.Optional(Type.Integer({ description: `stop after this many seconds (default ${CAPTURE_DEFAULTS.durationS})`, minimum: 1, maximum: CAPTURE_LIMITS.durationS })),
  rate: Type.Optional(Type.Integer({ description: `packets per second copied at most, more are skipped and counted (default ${CAPTURE_DEFAULTS.rate})`, minimum: 1, maximum: CAPTURE_LIMITS.rate })),
  snaplen: Type.Optional(Type.Integer({ description: 'bytes of each packet kept (0: all, the default)', minimum: 0, maximum: 0xffff })),
  outer: Type.Optional(Type.Boolean({ description: "also the tunnels' outer packets (ciphertext; GRE's carry the inner in clear) between the selected onramps' endpoints, on a third interface; default false", default: false })),
}, { additionalProperties: false });

const CaptureStatusSchema = Type.Object({
  id: Type.Integer(),
  state: Type.Union([Type.Literal('running'), Type.Literal('stopped')]),
  stop_reason: Type.Union([Type.Literal('count'), Type.Literal('bytes'), Type.Literal('duration'), Type.Literal('stopped'), Type.Null()], { description: 'the limit it reached, or stopped (a stop request)' }),
  selection: Type.Object({ onramp: Type.Optional(Type.String()), site: Type.Optional(Type.String()), flow: Type.Optional(Type.String()) }),
  filter: Type.String(),
  outer: Type.Boolean({ description: 'outer (underlay) packets are captured too' }),
  limits: Type.Object({ count: Type.Integer(), bytes: Type.Integer(), duration_s: Type.Integer(), rate: Type.Integer(), snaplen: Type.Integer() }),
  started_at: Type.String(),
  packets: Type.Integer({ description: 'decisions captured (a packet received and sent counts once)' }),
  records: Type.Integer({ description: 'pcapng packet blocks written (received and sent copies)' }),
  bytes: Type.Integer({ description: 'the pcapng file so far' }),
  rate_skipped: Type.Integer({ description: 'selected packets skipped over the rate limit' }),
  ring_skipped: Type.Integer({ description: 'selected packets skipped because the ring was full until the next drain' }),
  lane_errors: Type.Optional(Type.Array(Type.String(), { description: 'lanes (daemon.lanes > 1) that could not capture their part, and why' })),
  download: Type.String({ description: 'where the pcapng file is' }),
});
const IdParams = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,9}$' }) }, { additionalProperties: false });

function view(s: CaptureSession): Static<typeof CaptureStatusSchema> {
  return { ...s.status(), download: `${CAPTURES_PATH}/${s.id}/pcapng` };
}

function notFound(reply: FastifyReply, id: string): FastifyReply {
  return reply.code(404).send({ error: `no capture ${id}`, problems: [{ path: 'id', message: 'no such capture (GET /v1/captures lists them)' }] });
}

/**
 * How long a stop waits for the other lanes' last blocks (daemon.lanes > 1): they drain every DRAIN_INTERVAL_MS, so
 * a lane that answers at all answers well within this; one that does not leaves the file with what came.
 */
export const LANE_CAPTURE_SETTLE_MS = 2000;

/** `lanes`: the other lanes (daemon.lanes > 1), asked whether a flow of theirs is live before it is captured. */
export function registerCaptureRoutes(app: FastifyInstance, hub: CaptureHub, lanes?: OtherLanes): void {
  const tags = ['captures'];
  app.post(CAPTURES_PATH, {
    schema: { summary: `Start a bounded packet capture with each packet's decision (at most ${MAX_CAPTURES} at once)`, tags, body: CaptureBody, response: { 201: CaptureStatusSchema, 400: Problem, 404: Problem, 409: Problem, 503: Problem } },
  }, async (req, reply) => {
    const body = req.body as Static<typeof CaptureBody>;
    const flow = body.flow === undefined ? null : /^([46])-(\d+)$/.exec(body.flow);
    if (flow !== null && lanes !== undefined) {
      // Another lane's flow: that lane says whether it is live (the hub cannot see its tables).
      const { lane, slot } = laneOfFlowNumber(Number(flow[2]));
      if (lane > 0 && lane < lanes.count) {
        let live: unknown;
        try {
          live = await lanes.flow(lane, Number(flow[1]) as 4 | 6, slot);
        } catch (e) {
          return reply.code(503).send(laneProblem(e));
        }
        if (live === null) return reply.code(404).send({ error: 'cannot start this capture', problems: [{ path: 'flow', message: `flow ${body.flow} is not a live flow (it may have ended)` }] });
      }
    }
    try {
      const s = hub.start(body);
      return reply.code(201).header('location', `${CAPTURES_PATH}/${s.id}`).send(view(s));
    } catch (e) {
      if (!(e instanceof CaptureError)) throw e;
      return reply.code(e.status as 400 | 404 | 409).send({ error: e.status === 409 ? 'too many captures' : 'cannot start this capture', problems: [{ path: e.path, message: e.message }] });
    }
  });

  app.get(CAPTURES_PATH, {
    schema: { summary: 'Captures, running and stopped', tags, response: { 200: Type.Object({ items: Type.Array(CaptureStatusSchema) }) } },
  }, async () => ({ items: hub.list().map(view) }));

  app.get(`${CAPTURES_PATH}/:id`, {
    schema: { summary: "A capture's status", tags, params: IdParams, response: { 200: CaptureStatusSchema, 404: Problem } },
  }, async (req, reply) => {
    const { id } = req.params as Static<typeof IdParams>;
    const s = hub.get(Number(id));
    return s === undefined ? notFound(reply, id) : view(s);
  });

  app.get(`${CAPTURES_PATH}/:id/pcapng`, {
    schema: { summary: 'The capture as pcapng (what it holds so far while it runs)', tags, params: IdParams, response: { 404: Problem } },
  }, async (req, reply) => {
    const { id } = req.params as Static<typeof IdParams>;
    const s = hub.get(Number(id));
    if (s === undefined) return notFound(reply, id);
    return reply
      .header('content-type', PCAPNG_CONTENT_TYPE)
      .header('content-disposition', `attachment; filename="tether-capture-${s.id}.pcapng"`)
      .header('x-tether-capture-state', s.state)
      .send(Buffer.from(s.file().buffer));
  });

  app.post(`${CAPTURES_PATH}/:id/stop`, {
    schema: { summary: 'Stop a capture (it stays for download)', tags, params: IdParams, response: { 200: CaptureStatusSchema, 404: Problem } },
  }, async (req, reply) => {
    const { id } = req.params as Static<typeof IdParams>;
    const s = hub.stop(Number(id));
    if (s === undefined) return notFound(reply, id);
    // With lanes: what the other lanes held when it stopped is in the file before the answer.
    await hub.settled(s.id, LANE_CAPTURE_SETTLE_MS);
    return view(s);
  });

  app.delete(`${CAPTURES_PATH}/:id`, {
    schema: { summary: 'Stop a capture and forget it', tags, params: IdParams, response: { 204: Type.Null(), 404: Problem } },
  }, async (req, reply) => {
    const { id } = req.params as Static<typeof IdParams>;
    return hub.delete(Number(id)) ? reply.code(204).send() : notFound(reply, id);
  });
}
