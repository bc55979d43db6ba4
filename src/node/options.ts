import type { Level } from 'pino'
import type { ApiLimits } from '../api/limits.ts'
import type { ConsensusDriverOptions } from '../consensus/driver.ts'
import type { IntentPoolOptions } from '../mempool/pool.ts'
import type { MempoolServiceOptions } from '../mempool/service.ts'
import type { P2POptions } from '../p2p/host.ts'
import type { SettlementSweepOptions } from '../rollups/settlement-sweep.ts'
import type { ByzantineMode } from './byzantine.ts'

/** Everything a node is configured with. Defaults live here; the CLI only maps flags onto this. */
export interface NodeOptions {
  dataDir: string
  genesisPath: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  bootstrap: string[]
  /** HTTP API address, or undefined for no API. */
  api: { host: string; port: number } | undefined
  /** Mount /admin/v1/* (only allowed with a loopback API address). */
  admin: boolean
  /**
   * The API's rate, size and time limits (api/limits.ts DEFAULT_API_LIMITS for what is not given);
   * `--rate-limit` sets `rateLimit`, undefined there turning the rate limit off.
   */
  apiLimits: Partial<ApiLimits>
  /** Serve the dashboard page at `/dashboard/` of the API (this node's view; `--dashboard`). */
  dashboard: boolean
  /** RPC URL per rollup chain id. */
  rollups: Map<number, string>
  logLevel: Level
  /** Where logs go: a file path, or undefined for stderr. */
  logFile: string | undefined
  p2p: Partial<Omit<P2POptions, 'networkId' | 'listen'>>
  mempool: { pool: IntentPoolOptions; service: Partial<MempoolServiceOptions> }
  consensus: Partial<ConsensusDriverOptions>
  /**
   * When this node's validator is jailed for downtime and the jail time is over, sign and submit its
   * Unjail once the node is in step (CometBFT and Cosmos leave it to the operator; a network that heals
   * itself should not need one). `--no-auto-unjail` leaves it to the operator.
   */
  autoUnjail: boolean
  /**
   * The settlement sweep's pace (rollups/settlement-sweep.ts: every 10 s, escrows opened 30 s ago); not
   * a CLI flag.
   */
  sweep: Partial<Omit<SettlementSweepOptions, 'refundGraceSec'>>
  /**
   * TEST ONLY: misbehaviours of a Byzantine validator (node/byzantine.ts; `--byzantine`, taken only with
   * `MURMUR_TEST_BYZANTINE=1`). Empty for an honest node.
   */
  byzantine: ReadonlySet<ByzantineMode>
}

export const DEFAULT_NODE_OPTIONS: Omit<NodeOptions, 'dataDir' | 'genesisPath'> = {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [],
  api: { host: '127.0.0.1', port: 7070 },
  admin: false,
  apiLimits: {},
  dashboard: false,
  rollups: new Map(),
  logLevel: 'info',
  logFile: undefined,
  p2p: {},
  mempool: { pool: {}, service: {} },
  consensus: {},
  sweep: {},
  autoUnjail: true,
  byzantine: new Set(),
}
