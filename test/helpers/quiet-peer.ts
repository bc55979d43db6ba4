import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { TOPICS, type TopicPayloads } from '../../src/node/topics.ts'
import { P2PHost, type TopicHandlers } from '../../src/p2p/host.ts'
import { ignore } from '../../src/p2p/validation.ts'
import { Store } from '../../src/state/store.ts'

const log = pino({ level: process.env['MURMUR_TEST_LOG'] ?? 'silent' })

/**
 * A libp2p peer of network `networkId` in this process that speaks the real wire format (every topic,
 * every request protocol) and validates nothing it receives: the attacker or fuzzer of a real node.
 * `stop` stops it and removes its store.
 */
export async function startQuietPeer(
  networkId: string,
): Promise<{ host: P2PHost<TopicPayloads>; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-quiet-peer-'))
  const store = new Store(join(dir, 'db'))
  await store.open()
  const host = new P2PHost<TopicPayloads>(
    { networkId },
    {
      topics: TOPICS,
      privateKey: await generateKeyPair('Ed25519'),
      store,
      log,
      registry: new Registry(),
      head: () => ({ height: 0, blockHash: `0x${'0'.repeat(64)}` }),
    },
  )
  const quiet = { validate: () => ignore('NOT_LISTENING') }
  await host.start(
    Object.fromEntries(Object.keys(TOPICS).map((t) => [t, quiet])) as unknown as TopicHandlers<TopicPayloads>,
  )
  return {
    host,
    async stop() {
      await host.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
