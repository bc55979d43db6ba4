/**
 * The fuzz slice's shared machinery (issue 13, item 6): the one count knob `FUZZ_RUNS`, the per-target
 * record `npm run fuzz` prints, and the input generators every target mixes: fully random bytes, byte
 * mutations of valid encodings (flips, truncations, extensions, huge length fields, spliced regions),
 * CBOR trees with a field replaced or two fields swapped, and deep nesting. Random bytes alone stop at
 * the first check (the version byte, the CBOR header); mutations of valid messages reach the checks
 * behind it.
 */
import { appendFileSync } from 'node:fs'
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import fc from 'fast-check'
import { MurmurError } from '../../src/errors.ts'

/**
 * Cases per target at weight 1: small by default so the CI slice stays fast; `npm run fuzz` raises it
 * (scripts/fuzz.ts) so the whole run is at least 100,000 cases.
 */
export const FUZZ_RUNS = Math.max(1, Number(process.env['FUZZ_RUNS'] ?? 60))

/** Longest one case may take, ms: a decoder that takes longer on some input is a hang. */
export const CASE_LIMIT_MS = Number(process.env['FUZZ_CASE_LIMIT_MS'] ?? 2_000)

/** Cases for a target of relative cost `weight` (1 = a pure decoder). */
export function runs(weight = 1): number {
  return Math.max(1, Math.round(FUZZ_RUNS * weight))
}

/** Appends one target's figures to `FUZZ_REPORT` (a JSON-lines file scripts/fuzz.ts reads), if set. */
export function record(target: string, cases: number, ms: number): void {
  const file = process.env['FUZZ_REPORT']
  if (file !== undefined && file !== '') {
    appendFileSync(file, `${JSON.stringify({ target, cases, ms: Math.round(ms) })}\n`)
  }
}

/**
 * Why `err` is not an acceptable failure of a decoder (undefined when it is): only a typed Murmur error
 * (a `code` from the module's error union) of one of `allowed` classes is; a TypeError, RangeError or
 * plain Error out of a decoder is a crash.
 */
export function unexpected(
  err: unknown,
  allowed: ReadonlyArray<abstract new (...a: never[]) => MurmurError>,
) {
  if (err instanceof MurmurError && allowed.some((c) => err instanceof c) && typeof err.code === 'string') {
    return undefined
  }
  const e = err as Error
  return `${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`
}

/** Runs `fn` and fails when it takes longer than {@link CASE_LIMIT_MS} (a synchronous hang). */
export function bounded<T>(what: string, fn: () => T): T {
  const t0 = performance.now()
  let out: { ok: true; value: T } | { ok: false; err: unknown }
  try {
    out = { ok: true, value: fn() }
  } catch (err) {
    out = { ok: false, err }
  }
  const ms = performance.now() - t0
  // An untyped error: the caller's check reports it as a failure whatever the decoder did.
  if (ms > CASE_LIMIT_MS) throw new Error(`${what}: one case took ${ms.toFixed(0)} ms (a hang)`)
  if (!out.ok) throw out.err
  return out.value
}

/** A mutation of a byte string. */
type ByteOp =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'extend'; bytes: Uint8Array }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; n: number }
  | { op: 'huge'; at: number; width: 2 | 4 | 8 }
  | { op: 'splice'; at: number; from: number; n: number }

const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({
    op: fc.constant('set' as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x1b, 0x5b, 0x9f, 0xbf),
  }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 32 }) }),
  fc.record({
    op: fc.constant('huge' as const),
    at: fc.nat(),
    width: fc.constantFrom(2 as const, 4 as const, 8 as const),
  }),
  fc.record({
    op: fc.constant('splice' as const),
    at: fc.nat(),
    from: fc.nat(),
    n: fc.integer({ min: 1, max: 64 }),
  }),
)

function applyOp(b: Uint8Array, m: ByteOp): Uint8Array {
  const n = b.length
  const at = n === 0 ? 0 : ('at' in m ? m.at : 0) % n
  switch (m.op) {
    case 'flip': {
      if (n === 0) return b
      const c = b.slice()
      c[at] = c[at]! ^ (1 << m.bit)
      return c
    }
    case 'set': {
      if (n === 0) return b
      const c = b.slice()
      c[at] = m.value
      return c
    }
    case 'truncate':
      return b.subarray(0, at)
    case 'extend':
      return concat(b, m.bytes)
    case 'insert':
      return concat(b.subarray(0, at), m.bytes, b.subarray(at))
    case 'delete':
      return concat(b.subarray(0, at), b.subarray(at + m.n))
    case 'huge': {
      // A length or count field read as all ones (or just past a bound): the classic allocation bomb.
      const c = b.slice()
      for (let i = 0; i < m.width && at + i < n; i++) c[at + i] = i === 0 ? 0x7f : 0xff
      return c
    }
    case 'splice': {
      if (n === 0) return b
      const from = m.from % n
      return concat(b.subarray(0, at), b.subarray(from, from + m.n), b.subarray(at))
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** 1 to 4 byte mutations of one of `seeds`. */
export function mutatedBytes(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(byteOp, { minLength: 1, maxLength: 4 }))
    .map(([seed, ops]) => ops.reduce(applyOp, seed))
}

/** A random CBOR value: nested maps, arrays, byte strings, big and negative integers, floats. */
export const cborValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.bigInt({ min: -(1n << 64n), max: (1n << 64n) - 1n }),
    fc.double(),
    fc.string({ maxLength: 40 }),
    fc.uint8Array({ maxLength: 80 }),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 12 }), tie('node'), { maxKeys: 5 }),
  ),
})).node

/** Every path (as indices/keys) into a decoded CBOR tree. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(prefix)
  if (out.length > 2000) return out
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) paths(x, [...prefix, i], out)
  } else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out)
  }
  return out
}

function getAt(v: unknown, p: (string | number)[]): unknown {
  return p.reduce<unknown>((x, k) => (x as Record<string | number, unknown>)[k], v)
}

function setAt(v: unknown, p: (string | number)[], value: unknown): unknown {
  if (p.length === 0) return value
  const [k, ...rest] = p
  const copy: Record<string | number, unknown> = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<
    string | number,
    unknown
  >
  copy[k!] = setAt(copy[k!], rest, value)
  return copy
}

const replacement: fc.Arbitrary<unknown> = fc.oneof(
  cborValue,
  fc.uint8Array({ minLength: 0, maxLength: 3 }),
  fc.constant(new Uint8Array(70_000)),
  fc.constantFrom(0, -1, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER, 1.5, Number.NaN),
  fc.constantFrom(2n ** 64n - 1n, 2n ** 32n, -(2n ** 64n)),
  fc.constant([]),
  fc.constant({}),
)

/**
 * A valid CBOR message (after its `prefix` version byte) with one node of its tree replaced by a random
 * value, or two nodes swapped, or an array element dropped or repeated, re-encoded with the version byte.
 * Seeds that are not version byte + CBOR are returned unchanged (byte mutations cover them).
 */
export function mutatedCbor(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const trees = seeds.flatMap((s) => {
    try {
      return [{ version: s[0]!, tree: cborDecode(s.subarray(1), { useMaps: false }) as unknown }]
    } catch {
      return []
    }
  })
  if (trees.length === 0) return fc.constantFrom(...seeds)
  return fc
    .tuple(
      fc.constantFrom(...trees),
      fc.nat(),
      fc.nat(),
      fc.constantFrom('replace', 'swap', 'drop', 'repeat'),
      replacement,
    )
    .map(([{ version, tree }, i, j, how, value]) => {
      const ps = paths(tree)
      const a = ps[i % ps.length]!
      const b = ps[j % ps.length]!
      let out: unknown
      if (how === 'replace') out = setAt(tree, a, value)
      else if (how === 'swap') {
        // Swapping a node with its own ancestor would nest it in itself: swap only disjoint nodes.
        const nested = a.every((k, x) => b[x] === k) || b.every((k, x) => a[x] === k)
        out = nested ? setAt(tree, a, value) : setAt(setAt(tree, a, getAt(tree, b)), b, getAt(tree, a))
      } else {
        const parent = a.slice(0, -1)
        const arr = getAt(tree, parent)
        const k = a[a.length - 1]
        if (!Array.isArray(arr) || typeof k !== 'number') out = setAt(tree, a, value)
        else {
          const c = [...arr]
          if (how === 'drop') c.splice(k, 1)
          else c.splice(k, 0, c[k])
          out = setAt(tree, parent, c)
        }
      }
      return concat(new Uint8Array([version]), safeEncode(out))
    })
}

/** CBOR of `v`, or of null when cborg cannot encode it (a value generated out of its range). */
function safeEncode(v: unknown): Uint8Array {
  try {
    return cborEncode(v)
  } catch {
    return cborEncode(null)
  }
}

/** A version byte and `depth` nested one-element arrays or maps: the stack-depth probe. */
export const deepNesting: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.nat(3), fc.integer({ min: 1, max: 20_000 }), fc.constantFrom(0x81, 0xa1, 0x9f))
  .map(([version, depth, head]) => {
    const b = new Uint8Array(depth * (head === 0xa1 ? 2 : 1) + 2)
    b[0] = version
    let o = 1
    for (let i = 0; i < depth; i++) {
      if (head === 0xa1) b[o++] = 0xa1
      b[o++] = head === 0xa1 ? 0x00 : head
    }
    b[o] = 0x00
    return b
  })

/** The mix every binary target gets: random bytes, random CBOR, deep nesting, mutations of `seeds`. */
export function hostileBytes(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 512 }) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...new Set(seeds.map((s) => s[0] ?? 1))), cborValue)
        .map(([v, x]) => concat(new Uint8Array([v]), safeEncode(x))),
    },
    { weight: 1, arbitrary: deepNesting },
    { weight: 6, arbitrary: mutatedBytes(seeds) },
    { weight: 6, arbitrary: mutatedCbor(seeds) },
    { weight: 1, arbitrary: fc.constantFrom(...seeds) },
  )
}

/** A random JSON value (what `JSON.parse` can give), numbers and strings near the edges included. */
export const jsonValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ maxLength: 80 }),
    fc.constantFrom('0', '-1', '1e3', `0x${'a'.repeat(64)}`, `0x${'F'.repeat(40)}`, '9'.repeat(100), ''),
    fc.boolean(),
    fc.constant(null),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 12 }), tie('node'), { maxKeys: 6 }),
  ),
})).node

/** A valid JSON body with one field replaced by a random value, dropped, or an extra field added. */
export function mutatedJson(seeds: readonly unknown[]): fc.Arbitrary<unknown> {
  const jsonSeeds = seeds.map((s) => JSON.parse(JSON.stringify(s)) as unknown)
  return fc
    .tuple(fc.constantFrom(...jsonSeeds), fc.nat(), fc.constantFrom('replace', 'drop', 'add'), jsonValue)
    .map(([seed, i, how, value]) => {
      const ps = paths(seed)
      const p = ps[i % ps.length]!
      if (how === 'replace' || p.length === 0) return setAt(seed, p, value)
      const parent = p.slice(0, -1)
      const obj = getAt(seed, parent)
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return setAt(seed, p, value)
      const c = { ...(obj as Record<string, unknown>) }
      if (how === 'drop') delete c[String(p[p.length - 1])]
      else c['extra'] = value
      return setAt(seed, parent, c)
    })
}

/** The mix every JSON target gets: random JSON and mutations of valid bodies. */
export function hostileJson(seeds: readonly unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 1, arbitrary: jsonValue },
    { weight: 4, arbitrary: mutatedJson(seeds) },
    { weight: 1, arbitrary: fc.constantFrom(...seeds) },
  )
}
