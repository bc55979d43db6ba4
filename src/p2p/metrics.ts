import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** The p2p layer's Prometheus metrics. Labels are bounded: topic, result, code, protocol. */
export function createP2PMetrics(registry: Registry) {
  return {
    validation: new Counter({
      name: 'murmur_p2p_gossip_validation_total',
      help: 'Gossip messages validated, by topic, result (accept/ignore/reject) and code',
      labelNames: ['topic', 'result', 'code'] as const,
      registers: [registry],
    }),
    published: new Counter({
      name: 'murmur_p2p_gossip_published_total',
      help: 'Gossip messages published by this node, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    validationErrors: new Counter({
      name: 'murmur_p2p_gossip_validator_errors_total',
      help: 'Unexpected exceptions thrown by a topic validator (bugs), by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    queueLength: new Gauge({
      name: 'murmur_p2p_gossip_queue_length',
      help: 'Gossip messages waiting for validation, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    reqresp: new Counter({
      name: 'murmur_p2p_reqresp_total',
      help: 'Request/response exchanges by protocol, direction and outcome',
      labelNames: ['protocol', 'direction', 'outcome'] as const,
      registers: [registry],
    }),
    peers: new Gauge({ name: 'murmur_p2p_peers', help: 'Connected peers', registers: [registry] }),
    gossipRepairs: new Counter({
      name: 'murmur_p2p_gossip_repairs_total',
      help: 'Connections closed because gossipsub had lost its outbound stream to a connected peer',
      registers: [registry],
    }),
    bans: new Counter({
      name: 'murmur_p2p_bans_total',
      help: 'Peers banned for a score below the graylist threshold (repeat offences counted again)',
      registers: [registry],
    }),
    banned: new Gauge({ name: 'murmur_p2p_banned', help: 'Peers banned now', registers: [registry] }),
    replays: new Counter({
      name: 'murmur_p2p_gossip_replays_total',
      help: 'Gossip messages IGNOREd as already known, by topic and whether they cost the sender score',
      labelNames: ['topic', 'penalised'] as const,
      registers: [registry],
    }),
    validationSeconds: new Histogram({
      name: 'murmur_p2p_gossip_validation_seconds',
      help: 'Time spent validating one gossip message, by topic',
      labelNames: ['topic'] as const,
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
  }
}

export type P2PMetrics = ReturnType<typeof createP2PMetrics>
