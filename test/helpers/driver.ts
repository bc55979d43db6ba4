/**
 * A consensus driver with Murmur's application behind it, built the way the node builds them
 * (src/node/consensus.ts), for in-process consensus tests.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { type ApplicationModules, MurmurApplication } from '../../src/app/application.ts'
import type { Application } from '../../src/consensus/abci.ts'
import {
  ConsensusDriver,
  type ConsensusDriverModules,
  type ConsensusDriverOptions,
} from '../../src/consensus/driver.ts'
import type { IntentPool } from '../../src/mempool/pool.ts'
import type { SignedHealthReport } from '../../src/rollups/health-report.ts'
import { observationOf } from '../../src/rollups/observation.ts'
import type { Store } from '../../src/state/store.ts'

export interface TestDriverModules
  extends Omit<ApplicationModules, 'log'>,
    Omit<ConsensusDriverModules, 'app' | 'networkId' | 'store' | 'log' | 'registry'> {
  readonly store: Store
  readonly pool: IntentPool
  readonly log: Logger
  readonly registry: Registry
  /** Signed reports of every validator (test/helpers/consensus-net.ts); the driver observes its own. */
  readonly healthReports?: () => Promise<readonly SignedHealthReport[]>
  /**
   * What the driver talks to instead of the application itself (a Byzantine validator's proxy over it,
   * test/byzantine.test.ts); default the application.
   */
  readonly wrapApp?: (app: MurmurApplication) => Application
}

/**
 * The driver and its application (the real one, also when `wrapApp` puts a proxy between them); the
 * pool's new pending intents wake a waiting proposer.
 */
export function createTestDriver(
  options: Partial<ConsensusDriverOptions>,
  m: TestDriverModules,
): { driver: ConsensusDriver; app: MurmurApplication } {
  const app = new MurmurApplication(
    {},
    {
      store: m.store,
      pool: m.pool,
      genesis: m.genesis,
      verifyFill: m.verifyFill,
      observe: async () => {
        const self = m.account.address.toLowerCase()
        return ((await m.healthReports?.()) ?? [])
          .filter((s) => s.report.validator === self)
          .map((s) => observationOf(s.report))
      },
      pendingFills: m.pendingFills,
      ...(m.pendingStakeMoves === undefined ? {} : { pendingStakeMoves: m.pendingStakeMoves }),
      ...(m.pendingUnjails === undefined ? {} : { pendingUnjails: m.pendingUnjails }),
      log: m.log,
    },
  )
  const driver = new ConsensusDriver(
    { minBlockIntervalMs: m.genesis.params.blockIntervalMs, ...options },
    {
      ...m,
      app: m.wrapApp?.(app) ?? app,
      networkId: m.genesis.networkId,
      workSignal:
        m.workSignal ??
        ((wake) =>
          m.pool.onChange((c) => {
            if (c.state === 'pending') wake()
          })),
    },
  )
  return { driver, app }
}
