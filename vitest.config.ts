import { defineConfig } from 'vitest/config'

// The process-level files that each run a validator network with anvil rollups (4 or more node
// processes plus 2 or 3 anvils). Two of them at once on 2 cores starve both: in CI the settlement file's
// validators missed their jail deadline while the fifth-validator file ran beside it. `npm test`
// (scripts/test.ts) runs the two projects as two vitest processes at once, each one file at a time, so
// at most one network runs, beside at most one suite file; a plain `vitest run` runs them one after
// the other. (test/e2e/mempool-spam.test.ts and test/e2e/sweep.test.ts run one validator in process
// beside one or two anvils: suite files.)
const NETWORKS = [
  'test/e2e/settlement.test.ts',
  'test/e2e/scenario.test.ts',
  'test/e2e/staking-join.test.ts',
  'test/e2e/staking-pools.test.ts',
  'test/e2e/agreement.test.ts',
  'test/e2e/catchup.test.ts',
  'test/e2e/offline.test.ts',
  'test/e2e/rollups.test.ts',
  'test/e2e/dashboard.test.ts',
  'test/e2e/devnet-exit.test.ts',
  'test/e2e/netns.test.ts',
  'test/e2e/profiles.test.ts',
  'test/e2e/byzantine.test.ts',
  'test/e2e/crash-soak.test.ts',
  'test/e2e/fill-unannounced.test.ts',
]

const common = {
  pool: 'forks' as const,
  testTimeout: 60_000,
  hookTimeout: 60_000,
  maxWorkers: 1,
}

export default defineConfig({
  test: {
    projects: [
      { test: { ...common, name: 'suite', include: ['test/**/*.test.ts'], exclude: NETWORKS } },
      { test: { ...common, name: 'networks', include: NETWORKS } },
    ],
  },
})
