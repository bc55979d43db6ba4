import { defineConfig } from 'vitest/config'

// The process-level files that each run a validator network with anvil rollups (4 or more node
// processes plus 2 or 3 anvils). Two of them at once on 2 cores starve both: in CI the settlement file's
// validators missed their jail deadline while the fifth-validator file ran beside it. Vitest runs the
// two projects as two groups, one after the other (sequence.groupOrder): first the suite, two files at
// a time (unit tests and small process-level ones), then the networks, one file at a time, alone.
const NETWORKS = [
  'test/e2e/settlement.test.ts',
  'test/e2e/scenario.test.ts',
  'test/e2e/staking-join.test.ts',
  'test/e2e/staking-pools.test.ts',
  'test/e2e/agreement.test.ts',
  'test/e2e/catchup.test.ts',
  'test/e2e/offline.test.ts',
  'test/e2e/rollups.test.ts',
  'test/e2e/mempool-spam.test.ts',
  'test/e2e/dashboard.test.ts',
  'test/e2e/devnet-exit.test.ts',
  'test/e2e/netns.test.ts',
  'test/e2e/profiles.test.ts',
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
      {
        test: {
          ...common,
          name: 'suite',
          include: ['test/**/*.test.ts'],
          exclude: NETWORKS,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      { test: { ...common, name: 'networks', include: NETWORKS, sequence: { groupOrder: 1 } } },
    ],
  },
})
