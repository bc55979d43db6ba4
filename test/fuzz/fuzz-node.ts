/**
 * A one-validator node in this process for the fuzzers (test/helpers/api-node.ts): API on 127.0.0.1:0
 * with the admin routes and no rate limit (the fuzzers send thousands of requests), and undecodable
 * requests costing no score (so the fuzzing peer is not banned half way and then measures only the
 * refusal). Its validator key is returned so that seeds can be signed by a validator the node knows.
 */
import type { PrivateKeyAccount } from 'viem/accounts'
import { fastAccount } from '../../src/crypto/sign.ts'
import type { MurmurNode } from '../../src/node/node.ts'
import { startApiNode } from '../helpers/api-node.ts'

export interface FuzzNode {
  node: MurmurNode
  api: string
  networkId: string
  validator: PrivateKeyAccount
  stop(): Promise<void>
}

export async function startFuzzNode(): Promise<FuzzNode> {
  const { node, api, stop } = await startApiNode({
    admin: true,
    apiLimits: { rateLimit: undefined },
    p2p: { badRequestPenalty: 0 },
  })
  const { networkId } = (await (await fetch(`${api}/v1/status`)).json()) as { networkId: string }
  return { node, api, networkId, validator: fastAccount(node.keys.validatorPrivateKey), stop }
}

/** The sum of one Prometheus metric's series in `text` whose labels include `labels` (0 when none). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z0-9_:]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const l = m[2] ?? ''
    if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}
