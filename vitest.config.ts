import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Process-level tests spawn many node processes; on 2 cores running files in
    // parallel mostly adds contention, so cap the workers.
    maxWorkers: 2,
  },
})
