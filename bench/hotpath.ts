// Per-intent CPU of each step of the intent hot path, in one process: `npm run bench -- hotpath`.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import {
  decodeOrderData,
  decodeSignedIntentBatch,
  encodeSignedIntentBatch,
  intentId,
  signedIntentFromJson,
  signedIntentToJson,
} from '../src/codec/intent.ts'
import { recoverAddressNative } from '../src/crypto/recover.ts'
import { IntentPool } from '../src/mempool/pool.ts'
import { validateIntent, validateIntentJson } from '../src/mempool/validate.ts'
import { Store } from '../src/state/store.ts'
import { presignIntents } from './lib.ts'

const N = 5000
const set = presignIntents(N)
const bodies = set.map((s) => JSON.parse(JSON.stringify(signedIntentToJson(s.intent))))
const cpu = (label: string, f: () => void | Promise<void>) => async () => {
  const s = process.cpuUsage()
  await f()
  const u = process.cpuUsage(s)
  console.log(label.padEnd(24), ((u.user + u.system) / N).toFixed(1), 'us/intent')
}
const ctx = {
  nowSec: Math.floor(Date.now() / 1000),
  maxClockSkewSec: 30,
  knownChainIds: new Set([901n, 902n, 903n]),
}
await cpu('fromJson', () => {
  for (const b of bodies) signedIntentFromJson(b)
})()
await cpu('intentId', () => {
  for (const s of set) intentId(s.intent.order)
})()
await cpu('decodeOrderData', () => {
  for (const s of set) decodeOrderData(s.intent.order.orderData)
})()
await cpu('recover native', () => {
  for (const s of set) recoverAddressNative(s.id, s.intent.signature)
})()
await cpu('validateIntent', async () => {
  for (const s of set) await validateIntent(s.intent, ctx)
})()
await cpu('validateIntentJson', async () => {
  for (const b of bodies) await validateIntentJson(b, ctx)
})()
const batch = encodeSignedIntentBatch(set.slice(0, 500).map((s) => s.intent))
await cpu('batch decode (x10)', () => {
  for (let i = 0; i < 10; i++) decodeSignedIntentBatch(batch)
})()
const dir = await mkdtemp(join(tmpdir(), 'mb-'))
const store = new Store(join(dir, 'db'))
await store.open()
const pool = await IntentPool.open(store, {}, { log: pino({ level: 'silent' }), registry: new Registry() })
const valid = await Promise.all(set.map((s) => validateIntent(s.intent, ctx)))
await cpu('pool.addMany(256)', async () => {
  for (let i = 0; i < valid.length; i += 256) await pool.addMany(valid.slice(i, i + 256) as never)
})()
await store.close()
