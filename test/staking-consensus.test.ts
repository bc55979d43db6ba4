/**
 * Stake moves decided by consensus: four drivers in one process over an in-memory bus (as in
 * consensus-driver.test.ts), each with a StakingService whose `stake` topic messages go through the wire
 * codec and the topic validator. A move submitted to one node is gossiped, proposed, committed by all
 * four, persisted with the state, and returns when due. Every wait is for an outcome, with a deadline.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MurmurApplication } from '../src/app/application.ts'
import { BLOCKS_BY_RANGE_PROTOCOL, decodeBlock } from '../src/consensus/block.ts'
import type { ConsensusDriver } from '../src/consensus/driver.ts'
import { type ConsensusMessage, consensusMessageCodec } from '../src/consensus/messages.ts'
import { IntentPool } from '../src/mempool/pool.ts'
import type { ValidationResult } from '../src/p2p/validation.ts'
import { totalStake } from '../src/staking/ledger.ts'
import { signStakeMove, stakeMoveId } from '../src/staking/moves.ts'
import { StakingService, signedStakeMoveToJson } from '../src/staking/service.ts'
import { type StakeMessage, stakeMoveCodec } from '../src/staking/wire.ts'
import { genesisState } from '../src/state/genesis.ts'
import { votingPowers } from '../src/state/plan.ts'
import { loadAppState } from '../src/state/storage.ts'
import { Store } from '../src/state/store.ts'
import { addressOf, TEST_TIMEOUTS, testLog, testNetwork } from './helpers/consensus-net.ts'
import { createTestDriver } from './helpers/driver.ts'
import { waitFor } from './helpers/wait.ts'

const NET = testNetwork('staking-consensus-test', 32452843n, 3)
const NETWORK = NET.network
const VALIDATORS = NET.validators
const GENESIS = NET.genesis
const TIMEOUTS = TEST_TIMEOUTS
const log = testLog
const addr = addressOf
const healthReports = NET.healthReports

interface TestNode {
  index: number
  store: Store
  pool: IntentPool
  driver: ConsensusDriver
  app: MurmurApplication
  staking: StakingService
}

/** Consensus and stake messages, encoded and decoded, to every other node after its topic validator. */
class Bus {
  readonly nodes = new Map<number, TestNode>()
  readonly results: Array<{ topic: string; r: ValidationResult }> = []

  consensus(from: number, msg: ConsensusMessage): void {
    const bytes = consensusMessageCodec.encode(msg)
    for (const [i, node] of this.nodes) {
      if (i === from) continue
      setImmediate(() => {
        if (this.nodes.get(i) !== node) return
        const decoded = consensusMessageCodec.decode(bytes)
        void node.driver.validateMessage(decoded).then((r) => {
          if (r.result === 'ACCEPT') node.driver.onMessage(decoded, `node-${from}`)
          else this.results.push({ topic: 'consensus', r })
        })
      })
    }
  }

  /**
   * blocks-by-range from the first other node, through the protocol's codecs: a node that starts after
   * the others committed (3 of 4 is a quorum) catches up as a real node would.
   */
  async fetch(to: number, from: bigint, count: number) {
    const peer = [...this.nodes.values()].find((n) => n.index !== to)
    if (peer === undefined) return []
    const spec = BLOCKS_BY_RANGE_PROTOCOL
    const req = spec.request.decode(spec.request.encode({ from, count }))
    const res = await peer.driver.getBlocksRange(req.from, req.count)
    return spec.response.decode(spec.response.encode(res))
  }

  stake(from: number, msg: StakeMessage): void {
    const bytes = stakeMoveCodec.encode(msg)
    for (const [i, node] of this.nodes) {
      if (i === from) continue
      setImmediate(() => {
        const decoded = stakeMoveCodec.decode(bytes)
        const peer = {} as never
        void Promise.resolve(node.staking.topicHandler.validate(decoded, peer)).then((r) => {
          this.results.push({ topic: 'stake', r })
          if (r.result === 'ACCEPT') node.staking.topicHandler.onMessage?.(decoded, peer)
        })
      })
    }
  }
}

const bus = new Bus()
const dirs: string[] = []

async function startNode(index: number): Promise<TestNode> {
  const dir = await mkdtemp(join(tmpdir(), `murmur-staking-${index}-`))
  dirs.push(dir)
  const store = new Store(join(dir, 'db'))
  await store.open()
  const registry = new Registry()
  const pool = await IntentPool.open(store, {}, { log, registry })
  let driver: ConsensusDriver | undefined
  let app: MurmurApplication | undefined
  const staking = new StakingService(
    {},
    {
      networkId: NETWORK,
      state: () => app!.state,
      publish: async (m) => bus.stake(index, m),
      log,
      registry,
    },
  )
  const built = createTestDriver(
    { timeouts: TIMEOUTS, minBlockIntervalMs: 100, syncDelayMs: 400, stuckFetchMs: 1000 },
    {
      store,
      pool,
      account: VALIDATORS[index]!,
      genesis: GENESIS,
      broadcast: (msg) => bus.consensus(index, msg),
      verifyFill: async () => 'valid',
      healthReports,
      pendingFills: () => [],
      pendingStakeMoves: () => staking.pending(),
      fetchBlocks: (from, count) => bus.fetch(index, from, count),
      log: log.child({ node: index }),
      registry,
    },
  )
  driver = built.driver
  app = built.app
  const a = app
  staking.onPending(() => driver!.notifyWork())
  a.onCommit((e) => staking.onCommit(e.block, e.state))
  const node = { index, store, pool, driver, app: a, staking }
  bus.nodes.set(index, node)
  await driver.start()
  return node
}

describe('stake moves through consensus: four validators in one process', () => {
  const nodes: TestNode[] = []

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) nodes.push(await startNode(i))
  })

  afterAll(async () => {
    for (const n of nodes) {
      bus.nodes.delete(n.index)
      await n.driver.stop()
      await n.pool.close()
      await n.store.close()
    }
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it('commits a move submitted to one node on all four, then returns the stake when it is due', async () => {
    await waitFor('a first block everywhere', () => nodes.every((n) => n.driver.height >= 1n))
    const staker = VALIDATORS[1]!
    const genesis = genesisState(GENESIS)
    const total = totalStake(genesis)
    const powers = votingPowers(genesis)
    const s = await signStakeMove(staker, NETWORK, {
      staker: addr(staker),
      fromChainId: 901n,
      toChainId: 903n,
      amount: 40n,
      durationBlocks: 25n,
      nonce: 1n,
    })
    const id = stakeMoveId(NETWORK, s.move)
    // Submitted to node 2 (not the staker's own node): gossip carries it to the others.
    expect(await nodes[2]!.staking.submitJson(signedStakeMoveToJson(s))).toEqual({
      status: 202,
      body: { id },
    })

    await waitFor('the move in force in every state', () =>
      nodes.every((n) => n.app.state.stakeMoves.has(id)),
    )
    const record = nodes[0]!.app.state.stakeMoves.get(id)!
    expect(record).toMatchObject({ staker: addr(staker), amount: 40n, fromChainId: 901n, toChainId: 903n })
    expect(record.untilHeight).toBe(record.height + 25n)
    for (const n of nodes) {
      const st = n.app.state
      expect(st.stakeMoves.get(id)).toEqual(record)
      const v = st.validators.find((x) => x.address === addr(staker))!
      expect(Object.fromEntries(v.pools)).toEqual({ '901': 10n, '902': 50n, '903': 40n })
      expect(votingPowers(st)).toEqual(powers)
      expect(totalStake(st)).toBe(total)
      // The committing block is the same everywhere and carries the move.
      const b = (await n.driver.getBlock(record.height))!
      expect(b.hash).toBe((await nodes[0]!.driver.getBlock(record.height))!.hash)
      expect(decodeBlock(b.bytes).stakeMoves).toEqual([s])
      // Written with the state in the commit batch.
      expect((await loadAppState(n.store, GENESIS)).stakeMoves.get(id)).toEqual(record)
      expect(n.staking.has(id)).toBe(false)
    }
    // Once committed, the same move again is known: 200, not a second move.
    expect(await nodes[0]!.staking.submitJson(signedStakeMoveToJson(s))).toEqual({
      status: 200,
      body: { id },
    })

    await waitFor(
      'the stake back everywhere',
      () => nodes.every((n) => n.driver.height >= record.untilHeight && !n.app.state.stakeMoves.has(id)),
      { timeoutMs: 40_000 },
    )
    for (const n of nodes) {
      const v = n.app.state.validators.find((x) => x.address === addr(staker))!
      expect(Object.fromEntries(v.pools)).toEqual({ '901': 50n, '902': 50n })
      expect(totalStake(n.app.state)).toBe(total)
      expect(n.app.state.stakeNonces.get(addr(staker))).toBe(1n)
    }
    expect(bus.results.filter((x) => x.r.result === 'REJECT')).toEqual([])
  })
})
