/**
 * The committed contract artifacts (contracts/artifacts/, src/contracts/abi.ts, test/helpers/test-contracts.ts)
 * are what the sources compile to: the test recompiles into a temp dir (about 6 s with the wasm solc) and
 * compares byte for byte. A failure means: run `npm run contracts` and commit the outputs.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  compile,
  defaultPaths,
  readSources,
  recordedSourceHash,
  solcVersion,
  sourceHash,
  writeOutputs,
} from '../scripts/contracts.ts'
import { CONTRACTS_SOURCE_HASH } from '../src/contracts/abi.ts'

const committed = defaultPaths()
let tmp: string | undefined

afterAll(async () => {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true })
})

describe('contract artifacts', () => {
  it('carry the hash of the current sources', async () => {
    const hash = sourceHash(await readSources(), solcVersion())
    expect(await recordedSourceHash(committed.artifactsDir)).toBe(hash)
    expect(CONTRACTS_SOURCE_HASH).toBe(hash)
  })

  it('equal a fresh compilation of the sources', async () => {
    tmp = await mkdtemp(join(tmpdir(), 'murmur-contracts-'))
    const paths = {
      artifactsDir: join(tmp, 'artifacts'),
      abiModule: join(tmp, 'abi.ts'),
      testModule: join(tmp, 'test-contracts.ts'),
    }
    const { artifacts } = compile(await readSources())
    await writeOutputs(artifacts, paths)
    const names = (await readdir(paths.artifactsDir)).sort()
    expect((await readdir(committed.artifactsDir)).sort()).toEqual(names)
    for (const name of names) {
      expect(await readFile(join(committed.artifactsDir, name), 'utf8'), name).toBe(
        await readFile(join(paths.artifactsDir, name), 'utf8'),
      )
    }
    expect(await readFile(committed.abiModule, 'utf8')).toBe(await readFile(paths.abiModule, 'utf8'))
    expect(await readFile(committed.testModule, 'utf8')).toBe(await readFile(paths.testModule, 'utf8'))
  }, 120_000)
})
