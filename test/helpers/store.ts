import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { Store } from '../../src/state/store.ts'

/**
 * A Store in a fresh temporary directory for the tests of the calling `describe` block: opened before
 * them, closed and removed after them. Read `.store` inside hooks and tests.
 */
export function tempStore(prefix: string): { readonly store: Store } {
  let dir: string | undefined
  let store: Store | undefined
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
    store = new Store(join(dir, 'db'))
    await store.open()
  })
  afterAll(async () => {
    await store?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })
  return {
    get store() {
      if (store === undefined) throw new Error('tempStore: read .store inside a hook or test')
      return store
    },
  }
}
