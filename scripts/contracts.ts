/**
 * `npm run contracts`: compiles contracts/*.sol and contracts/test/*.sol with the npm `solc` (wasm, no
 * network), writes contracts/artifacts/<Name>.json and the TypeScript modules the node and the tests import
 * (src/contracts/abi.ts for the deployable contracts, test/helpers/test-contracts.ts for the test-only ones).
 *
 * Cached by source hash: keccak256 over the solc version, the settings, the OpenZeppelin version and every
 * contract source. When the artifacts already carry that hash nothing is compiled (`--force` compiles anyway).
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { keccak256, stringToBytes } from 'viem'

const require = createRequire(import.meta.url)

/** The repository root (this file is scripts/contracts.ts). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** Contracts whose ABI and bytecode the node ships (src/contracts/abi.ts). */
export const DEPLOYABLE = ['MurmurSettler', 'MurmurLightClient', 'TestToken'] as const
/** Test-only contracts (contracts/test/), exported to test/helpers/test-contracts.ts. */
export const TEST_ONLY = ['ReentrantToken', 'Erc1271Wallet'] as const

/**
 * Compiler settings. evmVersion 'prague': anvil 1.7 runs the latest fork (osaka) by default, which executes
 * prague code; prague is the newest fork every current L2 already runs.
 */
export const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'prague',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
} as const

/** One compiled contract as written to contracts/artifacts/<Name>.json. */
export interface Artifact {
  contractName: string
  sourceName: string
  abi: unknown[]
  bytecode: `0x${string}`
  deployedBytecode: `0x${string}`
  sourceHash: `0x${string}`
  solcVersion: string
}

interface Solc {
  version(): string
  compile(
    input: string,
    callbacks: { import(path: string): { contents: string } | { error: string } },
  ): string
}

function loadSolc(): Solc {
  return require('solc') as Solc
}

/** Version string of the installed solc (part of the cache key). */
export function solcVersion(): string {
  return loadSolc().version()
}

/** Source unit name -> content of every .sol under `dir` (contracts/ and contracts/test/), sorted by name. */
export async function readSources(root = ROOT): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const sub of ['contracts', 'contracts/test']) {
    let names: string[]
    try {
      names = await readdir(join(root, sub))
    } catch {
      continue
    }
    for (const name of names.filter((n) => n.endsWith('.sol')).sort()) {
      out[`${sub}/${name}`] = await readFile(join(root, sub, name), 'utf8')
    }
  }
  return out
}

/** The cache key: solc version, settings, OpenZeppelin version and every source (name and content). */
export function sourceHash(sources: Record<string, string>, solcVersion: string): `0x${string}` {
  const oz = (require('@openzeppelin/contracts/package.json') as { version: string }).version
  const parts = [solcVersion, JSON.stringify(SETTINGS), `@openzeppelin/contracts@${oz}`]
  for (const name of Object.keys(sources).sort()) parts.push(name, sources[name]!)
  return keccak256(stringToBytes(parts.join('\0')))
}

/** Resolves `@openzeppelin/...` imports from node_modules; anything else is refused (no network). */
function importCallback(path: string): { contents: string } | { error: string } {
  if (!path.startsWith('@openzeppelin/')) return { error: `import ${path}: only @openzeppelin/* is resolved` }
  try {
    return { contents: require('node:fs').readFileSync(require.resolve(path), 'utf8') }
  } catch (err) {
    return { error: `import ${path}: ${(err as Error).message}` }
  }
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[]
  contracts: Record<
    string,
    Record<
      string,
      { abi: unknown[]; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }
    >
  >
}

/** Compiles the sources; throws with solc's messages on any error. Warnings are returned. */
export function compile(sources: Record<string, string>): {
  artifacts: Artifact[]
  warnings: string[]
  solcVersion: string
} {
  const solc = loadSolc()
  const solcVersion = solc.version()
  const hash = sourceHash(sources, solcVersion)
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(Object.entries(sources).map(([k, content]) => [k, { content }])),
    settings: SETTINGS,
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: importCallback })) as SolcOutput
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  if (errors.length > 0) throw new Error(`solc:\n${errors.map((e) => e.formattedMessage).join('\n')}`)
  // OpenZeppelin's own warnings (the transient-storage note of its guard) are not ours to fix.
  const warnings = (output.errors ?? [])
    .filter((e) => e.severity !== 'error' && !e.formattedMessage.includes('--> @openzeppelin/'))
    .map((e) => e.formattedMessage)
  const artifacts: Artifact[] = []
  for (const [sourceName, byName] of Object.entries(output.contracts)) {
    if (!sourceName.startsWith('contracts/')) continue
    for (const [contractName, c] of Object.entries(byName)) {
      if (c.evm.bytecode.object === '') continue // interfaces and libraries without code
      artifacts.push({
        contractName,
        sourceName,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        sourceHash: hash,
        solcVersion,
      })
    }
  }
  artifacts.sort((a, b) => a.contractName.localeCompare(b.contractName))
  return { artifacts, warnings, solcVersion }
}

function tsModule(artifacts: Artifact[], names: readonly string[], header: string): string {
  const lines = [
    '// Generated by `npm run contracts` (scripts/contracts.ts) from contracts/*.sol: do not edit.',
    header,
    '',
  ]
  const hash = artifacts[0]?.sourceHash ?? '0x'
  lines.push(`/** Source hash of the compilation these exports come from. */`)
  lines.push(`export const CONTRACTS_SOURCE_HASH = '${hash}' as const`, '')
  for (const name of names) {
    const a = artifacts.find((x) => x.contractName === name)
    if (a === undefined) throw new Error(`contract ${name} missing from the compilation`)
    const id = name.replace(/^./, (c) => c.toLowerCase())
    lines.push(`/** ABI of ${name} (${a.sourceName}). */`)
    lines.push(`export const ${id}Abi = ${JSON.stringify(a.abi)} as const`, '')
    lines.push(`/** Creation bytecode of ${name}. */`)
    lines.push(`export const ${id}Bytecode = '${a.bytecode}' as const`, '')
  }
  return lines.join('\n')
}

/** Where the outputs go; a test points this at a temp dir. */
export interface OutputPaths {
  artifactsDir: string
  abiModule: string
  testModule: string
}

/** The committed output locations. */
export function defaultPaths(root = ROOT): OutputPaths {
  return {
    artifactsDir: join(root, 'contracts', 'artifacts'),
    abiModule: join(root, 'src', 'contracts', 'abi.ts'),
    testModule: join(root, 'test', 'helpers', 'test-contracts.ts'),
  }
}

/** The source hash recorded in the artifacts at `dir`, or undefined when there are none. */
export async function recordedSourceHash(dir: string): Promise<string | undefined> {
  try {
    const a = JSON.parse(await readFile(join(dir, `${DEPLOYABLE[0]}.json`), 'utf8')) as Artifact
    return a.sourceHash
  } catch {
    return undefined
  }
}

/** Writes the artifacts and both TypeScript modules. */
export async function writeOutputs(artifacts: Artifact[], paths: OutputPaths): Promise<void> {
  await mkdir(paths.artifactsDir, { recursive: true })
  for (const a of artifacts) {
    const { contractName, abi, bytecode, deployedBytecode, sourceHash, solcVersion, sourceName } = a
    const body = { contractName, sourceName, abi, bytecode, deployedBytecode, sourceHash, solcVersion }
    await writeFile(join(paths.artifactsDir, `${contractName}.json`), `${JSON.stringify(body, null, 2)}\n`)
  }
  const modules = [
    [
      paths.abiModule,
      tsModule(
        artifacts,
        DEPLOYABLE,
        '/** ABIs (`as const`, for viem) and creation bytecode of the Murmur contracts. */',
      ),
    ],
    [
      paths.testModule,
      tsModule(
        artifacts,
        TEST_ONLY,
        '/** ABIs and bytecode of the test-only contracts (contracts/test/). */',
      ),
    ],
  ] as const
  for (const [path, code] of modules) {
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, formatTs(code))
  }
}

/**
 * Formats generated code with the project's biome settings, so `biome check` passes on it and diffs stay
 * readable. Through stdin: biome refuses files outside the project (a test writes to a temp dir).
 */
function formatTs(code: string): string {
  return execFileSync(
    join(ROOT, 'node_modules', '.bin', 'biome'),
    ['format', '--stdin-file-path=src/contracts/generated.ts'],
    {
      cwd: ROOT,
      input: code,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    },
  )
}

async function main(): Promise<void> {
  const force = process.argv.includes('--force')
  const paths = defaultPaths()
  const sources = await readSources()
  const version = solcVersion()
  const hash = sourceHash(sources, version)
  if (!force && (await recordedSourceHash(paths.artifactsDir)) === hash) {
    console.log(`contracts: up to date (source hash ${hash.slice(0, 10)}, solc ${version})`)
    return
  }
  const t0 = performance.now()
  const { artifacts, warnings } = compile(sources)
  const ms = Math.round(performance.now() - t0)
  for (const w of warnings) console.warn(w)
  await writeOutputs(artifacts, paths)
  const names = artifacts.map((a) => a.contractName).join(', ')
  console.log(
    `contracts: compiled ${names} in ${ms} ms (solc ${version}) -> ${relative(ROOT, paths.artifactsDir)}`,
  )
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main()
}
