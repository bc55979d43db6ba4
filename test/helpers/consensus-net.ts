/**
 * A four-validator test network for in-process consensus tests: its genesis, validator keys, short round
 * timeouts and fresh, signed, all-up health reports for every (validator, chain).
 */
import { pino } from 'pino'
import type { Address, Hex } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import type { ConsensusParams } from '../../src/consensus/types.ts'
import { type Genesis, parseGenesis } from '../../src/node/genesis.ts'
import { gasRatioBps, type SignedHealthReport, signHealthReport } from '../../src/rollups/health-report.ts'

export const TEST_TIMEOUTS: ConsensusParams = {
  timeoutProposeMs: 800,
  timeoutProposeDeltaMs: 200,
  timeoutPrevoteMs: 300,
  timeoutPrevoteDeltaMs: 100,
  timeoutPrecommitMs: 300,
  timeoutPrecommitDeltaMs: 100,
}

export const testLog = pino({ level: process.env['MURMUR_TEST_LOG'] ?? 'silent' })

export const addressOf = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address

const ROLLUPS = [
  { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
  { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
  { chainId: 903, name: 'gamma', type: 'zk', securityBps: 9500 },
] as const

export interface TestNetwork {
  readonly network: string
  readonly validators: PrivateKeyAccount[]
  readonly genesis: Genesis
  /** Reports of every validator on every rollup, signed anew each second (fresh for the proposer). */
  healthReports(): Promise<SignedHealthReport[]>
}

/**
 * Four validators with keys i × `keyFactor` + 11, stake 100 each in pools 901 and 902, and the first
 * `rollups` of alpha (901), beta (902), gamma (903).
 */
export function testNetwork(network: string, keyFactor: bigint, rollups = 2): TestNetwork {
  const key = (i: number): Hex => `0x${(BigInt(i) * keyFactor + 11n).toString(16).padStart(64, '0')}`
  const validators = [1, 2, 3, 4].map((i) => privateKeyToAccount(key(i)))
  const chains = ROLLUPS.slice(0, rollups)
  const genesis = parseGenesis({
    networkId: network,
    genesisTime: Math.floor(Date.now() / 1000) - 10,
    validators: validators.map((v, i) => ({
      address: v.address,
      peerId: `peer-${i}`,
      stake: '100',
      pools: [901, 902],
    })),
    rollups: chains,
    params: { maxClockSkewSec: 30, blockIntervalMs: 100, healthFreshnessMs: 5000, fillTimeoutSec: 60 },
  })
  let held: { at: number; reports: SignedHealthReport[] } | undefined
  const healthReports = async (): Promise<SignedHealthReport[]> => {
    const now = Date.now()
    if (held === undefined || now - held.at > 1000) {
      const reports: SignedHealthReport[] = []
      for (const v of validators) {
        for (const c of chains) {
          const gasUsed = 10_000_000n
          const gasLimit = 30_000_000n
          reports.push(
            await signHealthReport(v, network, {
              validator: addressOf(v),
              chainId: BigInt(c.chainId),
              blockNumber: 1n,
              gasUsed,
              gasLimit,
              gasUsedRatioBps: gasRatioBps(gasUsed, gasLimit),
              baseFeeWei: 1_000_000_000n,
              blockTimeMs: 1000,
              latencyMs: 10,
              status: 0,
              timestampMs: BigInt(now),
            }),
          )
        }
      }
      held = { at: now, reports }
    }
    return held.reports
  }
  return { network, validators, genesis, healthReports }
}
