import fc from 'fast-check'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, type Rollups, startRollups } from '../devnet/anvil.ts'
import { P2PError } from '../src/errors.ts'
import {
  classifyHealth,
  DEFAULT_HEALTH_MONITOR_OPTIONS,
  HealthMonitor,
} from '../src/rollups/health-monitor.ts'
import {
  gasRatioBps,
  type HealthReport,
  type HealthValidationContext,
  healthReportCodec,
  healthReportTypedData,
  type SignedHealthReport,
  signHealthReport,
  validateHealthReport,
} from '../src/rollups/health-report.ts'
import {
  aggregateHealth,
  type GenesisRollup,
  HealthAggregator,
  rollupRows,
  weightedMedian,
} from '../src/rollups/health-view.ts'
import { waitFor } from './helpers/wait.ts'

const NETWORK = 'health-test'
const silent = pino({ level: 'silent' })

function lower(a: PrivateKeyAccount): Address {
  return a.address.toLowerCase() as Address
}

function baseReport(validator: PrivateKeyAccount, over: Partial<HealthReport> = {}): HealthReport {
  const gasUsed = over.gasUsed ?? 1_500_000n
  const gasLimit = over.gasLimit ?? 3_000_000n
  return {
    validator: lower(validator),
    chainId: 901n,
    blockNumber: 42n,
    gasUsed,
    gasLimit,
    gasUsedRatioBps: gasRatioBps(gasUsed, gasLimit),
    baseFeeWei: 1_000_000_000n,
    blockTimeMs: 1000,
    latencyMs: 3,
    status: 0,
    timestampMs: 1_700_000_000_000n,
    ...over,
  }
}

describe('health reports: signature, codec, gossip validation', () => {
  const v1 = privateKeyToAccount(generatePrivateKey())
  const v2 = privateKeyToAccount(generatePrivateKey())
  const outsider = privateKeyToAccount(generatePrivateKey())
  const now = 1_700_000_000_000n

  function ctx(over: Partial<HealthValidationContext> = {}): HealthValidationContext {
    return {
      networkId: NETWORK,
      validators: new Map([
        [lower(v1), 10n],
        [lower(v2), 20n],
      ]),
      nowMs: now,
      freshnessMs: 5_000,
      maxSkewMs: 2_000,
      lastSeen: () => undefined,
      knownChains: new Set([901n, 902n]),
      ...over,
    }
  }

  it('a validator-signed, fresh report is ACCEPTed and survives the wire', async () => {
    const signed = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now }))
    expect(await validateHealthReport(signed, ctx())).toEqual({ result: 'ACCEPT' })
    const bytes = healthReportCodec.encode(signed)
    expect(bytes.length).toBeLessThanOrEqual(healthReportCodec.maxBytes)
    expect(bytes[0]).toBe(1)
    const back = healthReportCodec.decode(bytes)
    expect(back).toEqual(signed)
    expect(await validateHealthReport(back, ctx())).toEqual({ result: 'ACCEPT' })
  })

  it('forged reports are REJECTed with their code', async () => {
    const report = baseReport(v1, { timestampMs: now })
    // Claims to be v1, signed by someone else.
    const wrongSigner: SignedHealthReport = {
      report,
      signature: (await outsider.signTypedData(healthReportTypedData(NETWORK, report))).toLowerCase() as Hex,
    }
    expect(await validateHealthReport(wrongSigner, ctx())).toEqual({
      result: 'REJECT',
      code: 'BAD_SIGNATURE',
    })
    // Properly signed by a key that is not a validator.
    const nonValidator = await signHealthReport(outsider, NETWORK, baseReport(outsider, { timestampMs: now }))
    expect(await validateHealthReport(nonValidator, ctx())).toEqual({
      result: 'REJECT',
      code: 'NOT_VALIDATOR',
    })
    // A validator with zero power is not a validator.
    expect(
      await validateHealthReport(
        await signHealthReport(v1, NETWORK, report),
        ctx({ validators: new Map([[lower(v1), 0n]]) }),
      ),
    ).toEqual({ result: 'REJECT', code: 'NOT_VALIDATOR' })
    // A field changed after signing.
    const good = await signHealthReport(v1, NETWORK, report)
    const tampered = { ...good, report: { ...good.report, status: 2 as const } }
    expect(await validateHealthReport(tampered, ctx())).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    // Signed for another network.
    const otherNet = await signHealthReport(v1, 'other-net', report)
    expect(await validateHealthReport(otherNet, ctx())).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    // A chain that is not a rollup of the network.
    const unknownChain = await signHealthReport(
      v1,
      NETWORK,
      baseReport(v1, { timestampMs: now, chainId: 999n }),
    )
    expect(await validateHealthReport(unknownChain, ctx())).toEqual({
      result: 'REJECT',
      code: 'UNKNOWN_CHAIN',
    })
    // From the future beyond the skew; within the skew it is fine.
    const future = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now + 2_001n }))
    expect(await validateHealthReport(future, ctx())).toEqual({ result: 'REJECT', code: 'FUTURE' })
    const nearFuture = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now + 2_000n }))
    expect(await validateHealthReport(nearFuture, ctx())).toEqual({ result: 'ACCEPT' })
    // A ratio that does not follow from gasUsed / gasLimit.
    const liar = await signHealthReport(
      v1,
      NETWORK,
      baseReport(v1, { timestampMs: now, gasUsedRatioBps: 100 }),
    )
    expect(await validateHealthReport(liar, ctx())).toEqual({ result: 'REJECT', code: 'INCONSISTENT' })
    // A malleable (high-s) twin of a good signature.
    const sig = Buffer.from(good.signature.slice(2), 'hex')
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const s = BigInt(`0x${sig.subarray(32, 64).toString('hex')}`)
    sig.set(Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex'), 32)
    sig[64] = sig[64] === 27 ? 28 : 27
    const twin = { report, signature: `0x${sig.toString('hex')}` as Hex }
    expect(await validateHealthReport(twin, ctx())).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
  })

  it('stale, replayed and too frequent reports are IGNOREd', async () => {
    const stale = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now - 5_001n }))
    expect(await validateHealthReport(stale, ctx())).toEqual({ result: 'IGNORE', code: 'STALE' })
    const edge = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now - 5_000n }))
    expect(await validateHealthReport(edge, ctx())).toEqual({ result: 'ACCEPT' })

    const r = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now }))
    const seen = (ts: bigint) => ctx({ lastSeen: (v, c) => (v === lower(v1) && c === 901n ? ts : undefined) })
    expect(await validateHealthReport(r, seen(now))).toEqual({ result: 'IGNORE', code: 'DUPLICATE' })
    expect(await validateHealthReport(r, seen(now + 1n))).toEqual({ result: 'IGNORE', code: 'DUPLICATE' })
    expect(await validateHealthReport(r, seen(now - 99n))).toEqual({ result: 'IGNORE', code: 'RATE_LIMITED' })
    expect(await validateHealthReport(r, seen(now - 100n))).toEqual({ result: 'ACCEPT' })
    // lastSeen is per (validator, chain): v2's history says nothing about v1.
    const other = ctx({ lastSeen: (v) => (v === lower(v2) ? now : undefined) })
    expect(await validateHealthReport(r, other)).toEqual({ result: 'ACCEPT' })
  })

  it('the codec refuses what is not a report', async () => {
    const signed = await signHealthReport(v1, NETWORK, baseReport(v1, { timestampMs: now }))
    const bytes = healthReportCodec.encode(signed)
    const code = (b: Uint8Array) => {
      try {
        healthReportCodec.decode(b)
        return 'decoded'
      } catch (err) {
        expect(err).toBeInstanceOf(P2PError)
        return (err as P2PError).code
      }
    }
    expect(code(new Uint8Array([1, 0xff, 0x00]))).toBe('DECODE')
    expect(code(Uint8Array.from([2, ...bytes.subarray(1)]))).toBe('DECODE')
    expect(code(new Uint8Array(healthReportCodec.maxBytes + 1).fill(1))).toBe('TOO_LARGE')
    expect(code(bytes.subarray(0, bytes.length - 3))).toBe('DECODE')
    // Every truncation fails to decode, none throws anything but P2PError.
    for (let i = 0; i < bytes.length; i++) expect(code(bytes.subarray(0, i))).toBe('DECODE')
    // Random bytes never decode into something the validator would crash on.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        const c = code(b)
        expect(['DECODE', 'TOO_LARGE', 'decoded']).toContain(c)
      }),
      { numRuns: 500 },
    )
  })
})

describe('health aggregation', () => {
  const accounts = [0, 1, 2, 3].map(() => privateKeyToAccount(generatePrivateKey()))
  const stakes = [10n, 20n, 30n, 40n]
  const validators = new Map(accounts.map((a, i) => [lower(a), stakes[i]!]))
  const rollups: GenesisRollup[] = [
    { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8_000 },
    { chainId: 902, name: 'beta', type: 'zk', securityBps: 9_500 },
  ]
  const now = 1_700_000_010_000n

  async function report(i: number, over: Partial<HealthReport> = {}): Promise<SignedHealthReport> {
    return signHealthReport(
      accounts[i]!,
      NETWORK,
      baseReport(accounts[i]!, { timestampMs: now - 100n, ...over }),
    )
  }

  it('more than 1/3 of stake saying down makes a rollup down; 1/3 or less does not', async () => {
    // 40 of 100 say down: 120 > 100.
    const agg = new HealthAggregator({ freshnessMs: 5_000 })
    for (let i = 0; i < 4; i++) agg.add(await report(i, { status: i === 3 ? 2 : 0 }))
    expect(agg.view(now, validators, rollups).get(901n)?.status).toBe('down')
    // 30 of 100 say down: 90 is not > 100. The figures come from the reports that reach the chain.
    const agg2 = new HealthAggregator({ freshnessMs: 5_000 })
    for (let i = 0; i < 4; i++) {
      agg2.add(await report(i, { status: i === 2 ? 2 : 0, baseFeeWei: i === 2 ? 1n : 7n }))
    }
    const h = agg2.view(now, validators, rollups).get(901n)!
    expect(h.status).toBe('up')
    expect(h.baseFeeWei).toBe(7n)
    // 10 + 30 = 40 say down: down.
    const agg3 = new HealthAggregator({ freshnessMs: 5_000 })
    for (let i = 0; i < 4; i++) agg3.add(await report(i, { status: i === 0 || i === 2 ? 2 : 0 }))
    expect(agg3.view(now, validators, rollups).get(901n)?.status).toBe('down')
    // Total stake counts validators that did not report: 30 of 100 is not enough even if alone.
    const agg4 = new HealthAggregator({ freshnessMs: 5_000 })
    agg4.add(await report(2, { status: 2 }))
    expect(agg4.view(now, validators, rollups).get(901n)?.status).toBe('degraded')
  })

  it('figures are stake-weighted medians, status the weighted median of statuses', async () => {
    const agg = new HealthAggregator({ freshnessMs: 5_000 })
    const fees = [100n, 200n, 300n, 400n]
    const latencies = [1, 2, 3, 400]
    for (let i = 0; i < 4; i++) {
      agg.add(
        await report(i, {
          baseFeeWei: fees[i],
          latencyMs: latencies[i],
          blockTimeMs: 1000 + i,
          status: i === 3 ? 1 : 0,
        }),
      )
    }
    const h = agg.view(now, validators, rollups).get(901n)!
    // Cumulative 10, 30, 60 of 100: the median is the third value (an unweighted median would be 250).
    expect(h.baseFeeWei).toBe(300n)
    expect(h.latencyMs).toBe(3)
    expect(h.blockTimeMs).toBe(1002)
    // 40 of 100 degraded: the median status is up.
    expect(h.status).toBe('up')
    expect(h.type).toBe('optimistic')
    expect(h.securityBps).toBe(8_000)
    agg.add(await report(2, { status: 1, timestampMs: now - 50n }))
    expect(agg.view(now, validators, rollups).get(901n)!.status).toBe('degraded')
  })

  it('no fresh report means down; stale and non-validator reports do not count', async () => {
    const agg = new HealthAggregator({ freshnessMs: 5_000 })
    agg.add(await report(3, { timestampMs: now - 5_001n }))
    const outsider = privateKeyToAccount(generatePrivateKey())
    agg.add(await signHealthReport(outsider, NETWORK, baseReport(outsider, { timestampMs: now })))
    agg.add(await report(0, { chainId: 999n }))
    const view = agg.view(now, validators, rollups)
    expect(view.get(901n)?.status).toBe('down')
    expect(view.get(902n)?.status).toBe('down')
    expect(agg.reportsUsed(now, validators, rollups)).toEqual([])
    expect(agg.prune(now)).toBe(1)
  })

  it('keeps the freshest report per validator and chain; the view is order independent', async () => {
    const reports: SignedHealthReport[] = []
    for (let i = 0; i < 4; i++) {
      reports.push(await report(i, { baseFeeWei: BigInt(100 * (i + 1)), timestampMs: now - 1_000n }))
      reports.push(await report(i, { baseFeeWei: BigInt(1_000 * (i + 1)), timestampMs: now - 500n }))
      reports.push(await report(i, { chainId: 902n, gasUsed: BigInt(i) * 1000n, gasUsedRatioBps: 0 }))
    }
    const a = new HealthAggregator()
    for (const r of reports) a.add(r)
    const used = a.reportsUsed(now, validators, rollups)
    expect(used).toHaveLength(8)
    expect(used.filter((r) => r.report.chainId === 901n).map((r) => r.report.baseFeeWei)).toEqual(
      [...accounts.keys()]
        .sort((x, y) => (lower(accounts[x]!) < lower(accounts[y]!) ? -1 : 1))
        .map((i) => BigInt(1_000 * (i + 1))),
    )
    // The proposer's view equals what a validator computes from the reports carried in the block.
    expect(aggregateHealth(used, now, validators, rollups)).toEqual(a.view(now, validators, rollups))
    // Insertion order does not matter; duplicates in a block do not double a validator's weight.
    fc.assert(
      fc.property(fc.shuffledSubarray(reports, { minLength: reports.length }), (shuffled) => {
        const b = new HealthAggregator()
        for (const r of shuffled) b.add(r)
        expect(b.view(now, validators, rollups)).toEqual(a.view(now, validators, rollups))
        expect(aggregateHealth([...shuffled, ...shuffled], now, validators, rollups)).toEqual(
          a.view(now, validators, rollups),
        )
      }),
      { numRuns: 50 },
    )
  })

  it('weightedMedian agrees with a naive expansion by weight', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ value: fc.integer({ min: 0, max: 50 }), weight: fc.integer({ min: 0, max: 6 }) }),
          {
            maxLength: 12,
          },
        ),
        (xs) => {
          const samples = xs.map((x, i) => ({
            value: x.value,
            weight: BigInt(x.weight),
            tiebreak: String(i),
          }))
          const expanded = xs.flatMap((x) => Array<number>(x.weight).fill(x.value)).sort((p, q) => p - q)
          const expected = expanded.length === 0 ? undefined : expanded[Math.ceil(expanded.length / 2) - 1]
          expect(weightedMedian(samples)).toBe(expected)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('builds the GET /v1/rollups rows', async () => {
    const agg = new HealthAggregator()
    for (let i = 0; i < 4; i++) agg.add(await report(i, { baseFeeWei: 12_345_678_901_234_567_890n }))
    const settlement = { settler: '0x' + '5e'.repeat(20), lightClient: '0x' + '1c'.repeat(20) }
    const withSettlement = [{ ...rollups[0]!, settlement }, rollups[1]!]
    const rows = rollupRows(
      agg.view(now, validators, rollups),
      withSettlement,
      new Map([[901n, 3]]),
      new Set([902n]),
    )
    expect(rows).toEqual([
      {
        chainId: 901,
        name: 'alpha',
        type: 'optimistic',
        status: 'up',
        gasUsedRatioBps: 5_000,
        baseFeeWei: '12345678901234567890',
        blockTimeMs: 1000,
        latencyMs: 3,
        pendingAssignments: 3,
        surging: false,
        settlement,
      },
      {
        chainId: 902,
        name: 'beta',
        type: 'zk',
        status: 'down',
        gasUsedRatioBps: 0,
        baseFeeWei: '0',
        blockTimeMs: 0,
        latencyMs: 0,
        pendingAssignments: 0,
        surging: true,
        settlement: null,
      },
    ])
  })

  it('classifies by the documented rule', () => {
    const t = DEFAULT_HEALTH_MONITOR_OPTIONS
    const o = {
      nowMs: 10_000,
      startedAtMs: 0,
      consecutiveErrors: 0,
      lastSuccessAtMs: 9_900,
      lastNewBlockAtMs: 9_500,
      blockTimeMs: 1_000,
      gasUsedRatioBps: 5_000,
      latencyMs: 3,
    }
    expect(classifyHealth(o, t)).toEqual({ status: 'up', reason: 'ok' })
    expect(classifyHealth({ ...o, gasUsedRatioBps: 9_001 }, t).reason).toBe('congested')
    expect(classifyHealth({ ...o, gasUsedRatioBps: 9_000 }, t).status).toBe('up')
    expect(classifyHealth({ ...o, latencyMs: 501 }, t).reason).toBe('slow_rpc')
    expect(classifyHealth({ ...o, consecutiveErrors: 1 }, t)).toEqual({
      status: 'degraded',
      reason: 'rpc_error',
    })
    expect(classifyHealth({ ...o, consecutiveErrors: 3, lastSuccessAtMs: 8_999 }, t)).toEqual({
      status: 'down',
      reason: 'rpc_failing',
    })
    expect(classifyHealth({ ...o, lastNewBlockAtMs: 7_000 }, t).reason).toBe('late_block')
    expect(classifyHealth({ ...o, lastNewBlockAtMs: 6_999 }, t)).toEqual({
      status: 'down',
      reason: 'stalled',
    })
    // Slow chains get 3 block times before they count as stalled.
    expect(classifyHealth({ ...o, blockTimeMs: 4_000, lastNewBlockAtMs: 0 }, t).status).not.toBe('down')
  })
})

describe('health monitor on anvil rollups', () => {
  let net: Rollups
  let a: Rollup
  let b: Rollup
  let monitor: HealthMonitor
  const validator = privateKeyToAccount(generatePrivateKey())
  const validators = new Map([[lower(validator), 1n]])
  const genesis: GenesisRollup[] = [
    { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8_000 },
    { chainId: 902, name: 'beta', type: 'zk', securityBps: 9_500 },
  ]
  const aggregator = new HealthAggregator({ freshnessMs: 5_000, maxSkewMs: 1_000 })
  const published: SignedHealthReport[] = []
  const refused: Array<{ result: string; code?: string }> = []

  beforeAll(async () => {
    net = await startRollups({
      count: 2,
      firstChainId: 901,
      blockTimeSec: 1,
      gasLimit: 3_000_000n,
      baseFeeWei: 1_000_000_000n,
    })
    a = net.get(901)
    b = net.get(902)
    monitor = new HealthMonitor(
      { rollups: new Map(net.rollups.map((r) => [r.chainId, r.rpcUrl])) },
      {
        log: silent,
        registry: new Registry(),
        account: validator,
        networkId: NETWORK,
        publish: async (signed) => {
          // Every report the monitor publishes must pass the gossip validator a receiver runs.
          const bytes = healthReportCodec.encode(signed)
          const msg = healthReportCodec.decode(bytes)
          const res = await validateHealthReport(msg, {
            networkId: NETWORK,
            validators,
            nowMs: Date.now(),
            freshnessMs: 5_000,
            maxSkewMs: 1_000,
            lastSeen: (v, c) => aggregator.lastSeen(v, c),
            knownChains: new Set([901n, 902n]),
          })
          if (res.result !== 'ACCEPT') refused.push(res)
          else aggregator.add(msg)
          published.push(msg)
        },
      },
    )
    monitor.start()
    await waitFor('both rollups up', () =>
      [901n, 902n].every(
        (c) => monitor.local().get(c)?.status === 'up' && aggregator.lastSeen(validator.address, c),
      ),
    )
  })

  afterAll(async () => {
    await monitor?.stop()
    await net?.stop()
  })

  const reportsOf = (chainId: bigint, sinceMs: number) =>
    published.filter((s) => s.report.chainId === chainId && s.report.timestampMs >= BigInt(sinceMs))

  it('reports a healthy chain: block time about 1 s, low latency, verifiable block figures', async () => {
    // Anvil timestamps are whole seconds: the monitor waits for a few blocks before it states a block time.
    const h = await waitFor('a measured block time', () => {
      const x = monitor.local().get(901n)!
      return x.blockTimeMs > 0 ? x : undefined
    })
    expect(h.status).toBe('up')
    expect(h.gasLimit).toBe(3_000_000n)
    expect(h.blockTimeMs).toBeGreaterThanOrEqual(750)
    expect(h.blockTimeMs).toBeLessThanOrEqual(1_250)
    expect(h.latencyMs).toBeLessThan(200)
    const view = aggregator.view(Date.now(), validators, genesis)
    expect(view.get(901n)?.status).toBe('up')
    expect(view.get(902n)?.status).toBe('up')
    // Reports come at most every reportIntervalMs (plus a poll) per chain, and none was refused.
    const since = Date.now()
    await waitFor('three more reports of 901', () => reportsOf(901n, since).length >= 3, { timeoutMs: 5_000 })
    const ts = reportsOf(901n, since).map((s) => Number(s.report.timestampMs))
    for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!).toBeGreaterThanOrEqual(400)
    expect(refused).toEqual([])
  })

  it('a congested chain: gas ratio near the limit, rising base fee, degraded', async () => {
    const start = Date.now()
    const load = a.congest({ txPerBlock: 4 })
    try {
      const congested = await waitFor(
        'a congested report of 901',
        () => reportsOf(901n, start).find((s) => s.report.gasUsedRatioBps >= 9_500 && s.report.status === 1),
        { timeoutMs: 15_000 },
      )
      const risen = await waitFor(
        'a later report with a higher base fee',
        () =>
          reportsOf(901n, Number(congested.report.timestampMs) + 1).find(
            (s) =>
              s.report.baseFeeWei > congested.report.baseFeeWei &&
              s.report.blockNumber > congested.report.blockNumber,
          ),
        { timeoutMs: 10_000 },
      )
      expect(risen.report.baseFeeWei).toBeGreaterThan(congested.report.baseFeeWei)
      expect(monitor.local().get(901n)?.reason).toBe('congested')
      const view = aggregator.view(Date.now(), validators, genesis).get(901n)!
      expect(view.status).toBe('degraded')
      expect(view.gasUsedRatioBps).toBeGreaterThanOrEqual(9_500)
      expect(view.gasUsed * 10_000n).toBeGreaterThanOrEqual(view.gasLimit * 9_500n)
      console.log(
        `congestion: degraded ${Number(congested.report.timestampMs) - start} ms after the load started, ` +
          `ratio ${congested.report.gasUsedRatioBps} bps, base fee ${congested.report.baseFeeWei} -> ${risen.report.baseFeeWei} wei`,
      )
      // The other rollup is untouched.
      expect(monitor.local().get(902n)?.status).toBe('up')
      expect(monitor.local().get(902n)?.gasUsedRatioBps).toBe(0)
    } finally {
      await load.stop()
    }
    const calm = Date.now()
    await waitFor('901 up again after the load', () =>
      reportsOf(901n, calm).find((s) => s.report.status === 0 && s.report.gasUsedRatioBps === 0),
    )
    expect(refused).toEqual([])
  })

  it('a killed chain is down within 3 s; restarted, it comes back up', async () => {
    const killedAt = Date.now()
    await b.stop()
    const down = await waitFor(
      'a down report of 902',
      () => reportsOf(902n, killedAt).find((s) => s.report.status === 2),
      {
        timeoutMs: 5_000,
        intervalMs: 20,
      },
    )
    const killToDown = Number(down.report.timestampMs) - killedAt
    expect(killToDown).toBeLessThan(3_000)
    expect(monitor.local().get(902n)?.reason).toBe('rpc_failing')
    expect(aggregator.view(Date.now(), validators, genesis).get(902n)?.status).toBe('down')
    // The other chain is not affected.
    expect(aggregator.view(Date.now(), validators, genesis).get(901n)?.status).toBe('up')

    const restartedAt = Date.now()
    await b.start()
    const up = await waitFor(
      'an up report of 902',
      () => reportsOf(902n, restartedAt).find((s) => s.report.status === 0),
      {
        timeoutMs: 10_000,
        intervalMs: 20,
      },
    )
    const startToUp = Number(up.report.timestampMs) - restartedAt
    expect(aggregator.view(Date.now(), validators, genesis).get(902n)?.status).toBe('up')
    console.log(`kill -> down report: ${killToDown} ms; restart call -> up report: ${startToUp} ms`)
    expect(refused).toEqual([])
  })

  it('an unreachable RPC that never answers is down within 3 s', async () => {
    const cutAt = Date.now()
    a.setUnreachable(true, 'blackhole')
    try {
      const down = await waitFor(
        'a down report of 901',
        () => reportsOf(901n, cutAt).find((s) => s.report.status === 2),
        {
          timeoutMs: 5_000,
          intervalMs: 20,
        },
      )
      const ms = Number(down.report.timestampMs) - cutAt
      expect(ms).toBeLessThan(3_000)
      console.log(`blackholed RPC -> down report: ${ms} ms`)
    } finally {
      a.setUnreachable(false)
    }
    const healedAt = Date.now()
    await waitFor('901 up again', () => reportsOf(901n, healedAt).find((s) => s.report.status === 0), {
      timeoutMs: 5_000,
    })
  })

  it('a chain that stops producing blocks is down after max(3 block times, 3 s)', async () => {
    const rpc = (method: string, params: unknown[]) =>
      fetch(a.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
        signal: AbortSignal.timeout(3_000),
      }).then((r) => r.json())
    const stoppedAt = Date.now()
    await rpc('evm_setIntervalMining', [0])
    try {
      const late = await waitFor(
        'a degraded (late block) report of 901',
        () => reportsOf(901n, stoppedAt).find((s) => s.report.status === 1),
        { timeoutMs: 5_000, intervalMs: 20 },
      )
      const down = await waitFor(
        'a down report of 901',
        () => reportsOf(901n, stoppedAt).find((s) => s.report.status === 2),
        { timeoutMs: 8_000, intervalMs: 20 },
      )
      const lastBlockSeenAt = monitor.local().get(901n)!.lastNewBlockAtMs!
      const ms = Number(down.report.timestampMs) - stoppedAt
      // 3 s after the last block was seen (up to one block before mining stopped), not earlier.
      expect(Number(down.report.timestampMs) - lastBlockSeenAt).toBeGreaterThan(3_000)
      expect(lastBlockSeenAt).toBeLessThanOrEqual(stoppedAt + 1_000)
      expect(ms).toBeLessThan(5_000)
      expect(Number(late.report.timestampMs)).toBeLessThan(Number(down.report.timestampMs))
      expect(monitor.local().get(901n)?.reason).toBe('stalled')
      console.log(
        `mining stopped -> degraded ${Number(late.report.timestampMs) - stoppedAt} ms, down ${ms} ms`,
      )
    } finally {
      await rpc('evm_setIntervalMining', [1])
    }
    const resumedAt = Date.now()
    await waitFor('901 up again', () => reportsOf(901n, resumedAt).find((s) => s.report.status === 0), {
      timeoutMs: 5_000,
    })
    expect(refused).toEqual([])
  })

  it('stop() leaves no poll behind', async () => {
    await monitor.stop()
    const count = published.length
    const after = Date.now()
    // Two poll periods with no new report prove the loops are gone.
    await waitFor(
      'two poll periods',
      () => Date.now() - after > 2 * DEFAULT_HEALTH_MONITOR_OPTIONS.pollMs + 100,
      {
        intervalMs: 50,
      },
    )
    expect(published.length).toBe(count)
  })
})
